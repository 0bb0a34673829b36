"""JSON logging with a request id that travels gateway → RPC → services.

The gateway puts the request id in a context variable; the pooled RPC client
sends it as nameko context data (header ``nameko.request_id``); in a service
the ``RequestContext`` dependency sets the same variable for the worker, and
nameko forwards it on any further RPC call or event.
"""
import contextvars
import json
import logging
import logging.config
import os
import time
import uuid

request_id_var = contextvars.ContextVar("request_id", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


def _stamp_request_id(factory):
    # Stamped when the record is made, so a handler that formats later (or in
    # another thread) still sees the id of the request that logged it.
    def make_record(*args, **kwargs):
        record = factory(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    make_record.stamps_request_id = True
    return make_record


if not getattr(logging.getLogRecordFactory(), "stamps_request_id", False):
    logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))


def new_request_id():
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per record. The process is named by ``process_name``, else by
    $STEWARD_PROCESS (configuration's LOGGING builds this formatter with no arguments)."""

    def __init__(self, process_name=None):
        super().__init__()
        self.process_name = process_name or os.environ.get("STEWARD_PROCESS") or "steward"

    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "process": self.process_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            exc = record.exc_info[1]
            if getattr(exc, "http_status", 500) < 500:
                # A typed 4xx error is the caller's mistake: its code says enough.
                entry["error"] = getattr(exc, "code", type(exc).__name__)
            else:
                entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings, process_name):
    """For processes that nameko's runner does not start (the gateway, the ingest consumer):
    the configuration's LOGGING, as the runner applies it, with records naming ``process_name``."""
    os.environ["STEWARD_PROCESS"] = process_name
    logging.config.dictConfig(settings["LOGGING"])
