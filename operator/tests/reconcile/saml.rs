//! A SAML IdentityProvider is Ready only once its IdP metadata was read and names a signing
//! certificate; until then the status says why. Either way it names what to register at the
//! IdP: keygate's entity id, assertion consumer service and SP metadata URL.

use crate::support::*;
use sqlx::PgPool;
use std::io::{Read, Write};
use std::process::Command;

const ENTITY_ID: &str = "https://auth.example.com/t/demo/saml";

fn idp(metadata: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: IdentityProvider\nmetadata:\n  name: partner\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  type: saml\n  saml:\n    entityId: {ENTITY_ID}\n    metadata:\n{metadata}"
    )
}

/// IdP metadata, with a signing certificate when `cert` is given (base64 DER).
fn metadata_xml(cert: Option<&str>) -> String {
    let key = cert
        .map(|c| format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"))
        .unwrap_or_default();
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"https://idp.partner.example/saml\"><md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{key}<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.partner.example/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>"
    )
}

/// A certificate made with openssl, as base64 DER (the PEM body).
fn certificate() -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=idp",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.path().join("c.pem"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// Serves `body` once per connection over plain HTTP on loopback; answers its URL.
fn serve(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metadata", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/samlmetadata+xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn indented(xml: &str) -> String {
    format!("      inline: '{xml}'\n")
}

#[sqlx::test(migrations = false)]
async fn saml_identity_provider_is_ready_once_its_metadata_names_a_signing_certificate(
    pool: PgPool,
) {
    let mut h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));

    // Metadata without a signing certificate: keygate could not check a single assertion.
    h.write("idp.yaml", &idp(&indented(&metadata_xml(None))));
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/partner");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ProviderUnreachable")
    );
    assert!(message.contains("no signing certificate"), "{message}");
    let status = match view.get("IdentityProvider default/partner") {
        Some(keygate_operator::Status::IdentityProvider(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(status.sp_entity_id.as_deref(), Some(ENTITY_ID));
    assert_eq!(
        status.acs_url.as_deref(),
        Some("https://auth.example.com/t/demo/sso/partner/acs")
    );
    assert_eq!(
        status.sp_metadata_url.as_deref(),
        Some("https://auth.example.com/t/demo/sso/partner/saml/metadata")
    );
    assert_eq!(status.redirect_uri, None, "no OAuth redirect for SAML");

    // With the IdP's signing certificate: Ready, and stored as the gateway reads it.
    let cert = certificate();
    h.write("idp.yaml", &idp(&indented(&metadata_xml(Some(&cert)))));
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/partner");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "Reconciled"),
        "{message}"
    );
    assert!(
        message.contains("https://idp.partner.example/saml"),
        "{message}"
    );
    assert!(message.contains(ENTITY_ID), "{message}");
    let id = h.tenant_id("demo").await;
    let row = h
        .ctx
        .store
        .idp_by_name(id, "partner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.config["protocol"]["type"], "saml");
    assert_eq!(row.config["protocol"]["entityId"], ENTITY_ID);

    // From a URL: a plain-http one only under `keygate dev`, then fetched and parsed.
    let url = serve(metadata_xml(Some(&cert)));
    h.write("idp.yaml", &idp(&format!("      url: {url}\n")));
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/partner");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ProviderUnreachable")
    );
    assert!(message.contains("only `keygate dev` accepts"), "{message}");
    h.ctx.allow_loopback_http = true;
    let view = h.sync().await;
    let (state, _, message) = ready(&view, "IdentityProvider default/partner");
    assert_eq!(state, "True", "{message}");

    // A URL nothing answers: not Ready, with the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/metadata", closed.local_addr().unwrap());
    drop(closed);
    h.write("idp.yaml", &idp(&format!("      url: {dead}\n")));
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/partner");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ProviderUnreachable")
    );
    assert!(message.contains(&dead), "{message}");
}
