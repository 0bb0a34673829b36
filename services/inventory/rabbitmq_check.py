"""The "test credentials" action: really log in to a RabbitMQ with the given settings."""
import time
from urllib.parse import quote

from kombu import Connection


def test_credentials(host, port, user, password, vhost="/", timeout=5.0):
    uri = f"amqp://{quote(user, safe='')}:{quote(password or '', safe='')}@{host}:{port}/{quote(vhost, safe='')}"
    started = time.monotonic()
    connection = Connection(uri, connect_timeout=timeout)
    try:
        connection.connect()
        connection.default_channel  # opening a channel proves the vhost permissions too
        latency = (time.monotonic() - started) * 1000
        return {"ok": True, "message": f"connected to {host}:{port} vhost {vhost} as {user}", "latency_ms": round(latency, 1)}
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        if "ACCESS_REFUSED" in reason or "403" in reason:
            reason = "login refused: wrong user name or password"
        elif "NOT_ALLOWED" in reason or "530" in reason:
            reason = f"user {user} may not use vhost {vhost}"
        return {"ok": False, "message": f"cannot connect to {host}:{port}: {reason}", "latency_ms": None}
    finally:
        connection.release()
