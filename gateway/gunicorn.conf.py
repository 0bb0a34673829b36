# gunicorn settings for the gateway; each can be overridden from the environment.
import os
import socket
import threading
import time

bind = os.environ.get("STEWARD_BIND", "127.0.0.1:8080")
# gthread that reads each request's head (and a JSON body) in its main loop, so slow clients hold no
# thread; gunicorn's own errors as JSON; no software name in the Server header (gateway/worker.py).
worker_class = "gateway.worker.GatewayWorker"
workers = int(os.environ.get("STEWARD_GATEWAY_WORKERS", "2"))
threads = int(os.environ.get("STEWARD_GATEWAY_THREADS", "4"))
# Connections a worker holds at once, reading or kept alive (each reading one may buffer up to 1 MiB).
worker_connections = int(os.environ.get("STEWARD_GATEWAY_CONNECTIONS", "256"))
keepalive = 30
timeout = 60
graceful_timeout = 20
# gunicorn's defaults, said here because the gateway relies on them: a request line, a header and the
# number of headers are bounded (414 and 431 beyond them).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"

# Behind a load balancer (docker-compose.yml's HAProxy): on SIGTERM the gateway first tells the
# balancer's agent check "drain" and keeps serving for drain_seconds, so no request is sent to a
# listener that is about to close; then it stops as usual (in-flight requests finish).
drain_seconds = float(os.environ.get("STEWARD_DRAIN_SECONDS", "0"))
drain_agent_port = int(os.environ.get("STEWARD_DRAIN_AGENT_PORT", "0"))


def _serve_drain_agent(port, draining):
    """HAProxy's agent-check protocol: one line per connection, "up" or "drain"."""
    listener = socket.create_server(("0.0.0.0", port))
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"drain\n" if draining.is_set() else b"up ready\n")


def when_ready(server):
    if not drain_seconds:
        return
    draining = threading.Event()
    if drain_agent_port:
        threading.Thread(target=_serve_drain_agent, args=(drain_agent_port, draining), daemon=True).start()
    stop = server.handle_term

    def handle_term():
        server.log.info("SIGTERM: draining for %.1f s before stopping", drain_seconds)
        draining.set()
        time.sleep(drain_seconds)
        stop()

    server.handle_term = handle_term
