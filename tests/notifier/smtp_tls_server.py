"""An SMTP server for the tests that insists on STARTTLS and a login, then files mail in a maildir.

    python tests/notifier/smtp_tls_server.py PORT MAILDIR CERT KEY USER PASSWORD
"""
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


def main(port, maildir, cert, key, user, password):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), tls_context=context,
                            require_starttls=True, auth_require_tls=True, authenticator=authenticate)
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
