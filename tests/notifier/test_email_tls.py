"""Email over STARTTLS with a login, against an SMTP server that refuses anything less."""
import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.notifier.conftest import SmtpServer, rule, wait_for

PASSWORD = "smtp-pass-Zq81"


def _self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "steward test smtp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_smtp(tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the notifier verifies the server against this CA only
    server = SmtpServer(tmp_path / "maildir", tls=(cert, key, "steward", PASSWORD))
    yield server
    server.stop()


def _channel(rpc, admin, server, name, **settings):
    return rpc.call("notifier", "create_channel", admin, {"name": name, "kind": "email", "settings": dict({
        "host": "127.0.0.1", "port": server.port, "starttls": True, "username": "steward", "password": PASSWORD,
        "sender": "steward@example.net", "recipients": ["ops@example.net"]}, **settings)})


def test_starttls_and_login_with_the_sealed_password(rpc, admin, notifier, tls_smtp, emit):
    good = _channel(rpc, admin, tls_smtp, "tls-mail")
    result = rpc.call("notifier", "test_channel", admin, good["id"])
    assert result["ok"] is True, result
    wrong = _channel(rpc, admin, tls_smtp, "wrong-password", password="not-it")
    result = rpc.call("notifier", "test_channel", admin, wrong["id"])
    assert result["ok"] is False and "535" in result["message"] and "not-it" not in result["message"]
    # Without STARTTLS this server offers no AUTH, so the password never crosses in the clear.
    plain = _channel(rpc, admin, tls_smtp, "plain", starttls=False)
    result = rpc.call("notifier", "test_channel", admin, plain["id"])
    assert result["ok"] is False and "AUTH extension not supported" in result["message"]

    rule(rpc, admin, [good], event_types=["install_finished"])
    emit("install_finished", server_id=5, server_name="kea-5", task_id="t-9", state="failed",
         error="apt-get: unable to fetch kea-dhcp4-server")
    wait_for(lambda: len(tls_smtp.messages()) == 2, what="the install email")
    subjects = sorted(m["Subject"] for m in tls_smtp.messages())
    assert subjects == ["[Steward] Install on kea-5 failed", "[Steward] Test message"]
