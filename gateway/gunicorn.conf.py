# gunicorn settings for the gateway; each can be overridden from the environment.
import os

bind = os.environ.get("STEWARD_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = int(os.environ.get("STEWARD_GATEWAY_WORKERS", "2"))
threads = int(os.environ.get("STEWARD_GATEWAY_THREADS", "4"))
keepalive = 30
timeout = 60
graceful_timeout = 20
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"
