"""Email over STARTTLS with a login, against an SMTP server that refuses anything less."""
import pytest

from tests.notifier.conftest import SmtpServer, rule, wait_for
from tests.tls import self_signed

PASSWORD = "smtp-pass-Zq81"


@pytest.fixture
def tls_smtp(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path, "steward test smtp")
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
