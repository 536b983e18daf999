"""An SMTP relay for the gateway's mail tests (aiosmtpd): STARTTLS required before AUTH
and MAIL, one account (user/password from the arguments). Prints "READY" once it accepts
connections, then one JSON line per message received: envelope, whether the session was
encrypted and authenticated, the raw message, and its subject, text and HTML parts as
Python's standard MIME parser reads them."""
import argparse
import asyncio
import email
import email.policy
import json
import logging
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        print(json.dumps({
            "subject": str(msg["subject"] or ""),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "data": envelope.content.decode("utf-8", "replace"),
        }), flush=True)
        return "250 OK"


def main():
    # aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login.decode() == a.user and auth_data.password.decode() == a.password
        return AuthResult(success=ok)

    controller = Controller(
        Sink(), hostname="127.0.0.1", port=a.port, server_hostname="localhost",
        tls_context=ctx, require_starttls=True,
        authenticator=authenticate, auth_require_tls=True, auth_required=True,
    )
    controller.start()
    print("READY", flush=True)
    try:
        asyncio.run(asyncio.to_thread(sys.stdin.read))  # runs until the test closes stdin
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
