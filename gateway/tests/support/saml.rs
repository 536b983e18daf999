//! A SAML 2.0 identity provider for the federation tests: `gateway/tests/peers/saml_idp.py`
//! (pysaml2 from PyPI, signing with xmlsec1) on a free loopback port, signing with an RSA key
//! and certificate the test makes with `openssl`. The test says who signs in next and which
//! flaw the answers carry through its `/control` endpoint.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running IdP.
pub struct SamlIdp {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its metadata URL (also its entity id).
    pub metadata_url: String,
    child: Child,
    _keys: tempfile::TempDir,
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who signs in next.
pub struct Person<'a> {
    pub subject: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub groups: &'a [&'a str],
}

impl SamlIdp {
    /// Starts the IdP, which reads keygate's SP metadata from `sp_metadata_url` at the first
    /// AuthnRequest; panics (the test fails) when it cannot start.
    pub fn start(sp_metadata_url: &str) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let out = Command::new("openssl")
            .current_dir(keys.path())
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "idp.key", "-out", "idp.pem", "-days", "2"])
            .args(["-subj", "/CN=keygate test SAML IdP"])
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python = super::smtp::python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/test once (it creates the peers' venv) or set KEYGATE_TEST_PYTHON",
            python.display()
        );
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/saml_idp.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(keys.path().join("idp.key"))
            .arg(keys.path().join("idp.pem"))
            .arg(sp_metadata_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the peers' python runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = tx.send(port.trim().parse::<u16>().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the SAML IdP (pysaml2) prints its port within 30 s: is pysaml2 installed?");
        let url = format!("http://127.0.0.1:{port}");
        Self {
            metadata_url: format!("{url}/metadata"),
            url,
            child,
            _keys: keys,
        }
    }

    /// Sets who signs in next and the flaw (`none`, `unsigned`, `tampered`, `wrong_audience`,
    /// `in_response_to`, `fixed_id`, `stale_login`) of the next answers.
    pub async fn next(&self, person: &Person<'_>, flaw: &str) {
        let mut url = url::Url::parse(&format!("{}/control", self.url)).unwrap();
        url.query_pairs_mut()
            .append_pair("subject", person.subject)
            .append_pair("email", person.email)
            .append_pair("name", person.name)
            .append_pair("groups", &person.groups.join(","))
            .append_pair("flaw", flaw);
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 200);
    }

    /// What the last AuthnRequest said: `id`, `issuer`, `acs`, `force_authn`.
    pub async fn last_request(&self) -> serde_json::Value {
        reqwest::get(format!("{}/last", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
