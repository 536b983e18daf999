"""A SAML 2.0 identity provider for keygate's tests, built on pysaml2 (PyPI).

Usage: saml_idp.py KEY_PEM CERT_PEM SP_METADATA_URL

Listens on 127.0.0.1 (a free port) over plain HTTP and prints "listening PORT". Serves:
  GET /metadata          the IdP's metadata (entity id, HTTP-Redirect SSO service, signing cert)
  GET /sso/redirect      an AuthnRequest (HTTP-Redirect binding): answers at once for the
                         person set through /control with an HTML page whose form POSTs the
                         signed SAMLResponse and the RelayState to the request's ACS
  GET /control?...       who signs in next (subject, email, name, groups=a,b) and which flaw
                         the next answers carry
  GET /last              what the last AuthnRequest said (issuer, ACS, ForceAuthn, id), as JSON

keygate's SP metadata is read from SP_METADATA_URL when the first request arrives, so the IdP
learns keygate's entity id and ACS the way an administrator would import them.

Flaws: none, unsigned (no signature at all), tampered (signed, then the email changed),
wrong_audience (the assertion is addressed to another SP), in_response_to (answers another
request id), fixed_id (every assertion gets the same ID), stale_login (ignores ForceAuthn and
reports a login an hour old).
"""

import base64
import html
import json
import sys
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import saml2.s_utils
from saml2 import BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORD
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml2.server import Server

KEY, CERT, SP_METADATA_URL = sys.argv[1], sys.argv[2], sys.argv[3]
ORIGINAL_SID = saml2.s_utils.sid

state = {
    "person": {"subject": "ada", "email": "ada@example.com", "name": "Ada", "groups": []},
    "flaw": "none",
    "last": None,
    "sp_loaded": False,
}


def idp_config(base):
    conf = IdPConfig()
    conf.load(
        {
            "entityid": base + "/metadata",
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(base + "/sso/redirect", BINDING_HTTP_REDIRECT)]
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": False,
                    "policy": {"default": {"lifetime": {"minutes": 5}}},
                }
            },
            "key_file": KEY,
            "cert_file": CERT,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "metadata": {},
            "allow_unknown_attributes": True,
        }
    )
    return conf


def answer(idp, query):
    if not state["sp_loaded"]:
        with urllib.request.urlopen(SP_METADATA_URL, timeout=10) as r:
            idp.metadata.load("inline", r.read().decode())
        state["sp_loaded"] = True
    request = idp.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
    flaw, person = state["flaw"], state["person"]
    state["last"] = {
        "id": request.id,
        "issuer": request.issuer.text,
        "acs": request.assertion_consumer_service_url,
        "force_authn": request.force_authn in ("true", "1", True),
    }
    fresh = state["last"]["force_authn"] and flaw != "stale_login"
    identity = {"email": [person["email"]], "name": [person["name"]]}
    if person["groups"]:
        identity["groups"] = person["groups"]
    saml2.s_utils.sid = (lambda: "_fixed-assertion-id") if flaw == "fixed_id" else ORIGINAL_SID
    response = idp.create_authn_response(
        identity,
        in_response_to="_not-the-request" if flaw == "in_response_to" else request.id,
        destination=request.assertion_consumer_service_url,
        sp_entity_id="urn:someone-else" if flaw == "wrong_audience" else request.issuer.text,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=person["subject"]),
        authn={
            "class_ref": PASSWORD,
            "authn_instant": int(time.time()) if fresh else int(time.time()) - 3600,
        },
        sign_assertion=flaw != "unsigned",
        sign_response=False,
        # pysaml2 signs with RSA-SHA1 unless told otherwise, which keygate refuses.
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    xml = str(response)
    if flaw == "tampered":
        xml = xml.replace(person["email"], "mallory@example.com")
    encoded = base64.b64encode(xml.encode()).decode()
    relay = query.get("RelayState", [""])[0]
    acs = html.escape(request.assertion_consumer_service_url, quote=True)
    return (
        "<!doctype html><html><body>"
        f'<form method="post" action="{acs}">'
        f'<input type="hidden" name="SAMLResponse" value="{encoded}">'
        f'<input type="hidden" name="RelayState" value="{html.escape(relay, quote=True)}">'
        "<noscript><button>Continue</button></noscript></form>"
        "<script>document.forms[0].submit()</script></body></html>"
    )


class Handler(BaseHTTPRequestHandler):
    idp = None
    metadata = ""

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if url.path == "/metadata":
                self.reply(200, Handler.metadata, "application/samlmetadata+xml")
            elif url.path == "/sso/redirect":
                self.reply(200, answer(Handler.idp, query), "text/html")
            elif url.path == "/control":
                one = lambda k, d: query.get(k, [d])[0]
                groups = one("groups", "")
                state["person"] = {
                    "subject": one("subject", "ada"),
                    "email": one("email", "ada@example.com"),
                    "name": one("name", "Ada"),
                    "groups": [g for g in groups.split(",") if g],
                }
                state["flaw"] = one("flaw", "none")
                self.reply(200, "ok", "text/plain")
            elif url.path == "/last":
                self.reply(200, json.dumps(state["last"]), "application/json")
            else:
                self.reply(404, "not found", "text/plain")
        except Exception as e:  # the test reads the reason from the page
            self.reply(500, f"IdP error: {e!r}", "text/plain")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    conf = idp_config(base)
    Handler.idp = Server(config=conf)
    Handler.metadata = create_metadata_string(None, config=conf, valid=1)
    if isinstance(Handler.metadata, bytes):
        Handler.metadata = Handler.metadata.decode()
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
