"""Schemathesis hooks for tests/contract/test_schemathesis.py (loaded by name, SCHEMATHESIS_HOOKS).

Generated requests stay on this machine, and the run keeps the admin it runs as: any address the control
plane would connect to (a channel's URL or SMTP host, RabbitMQ's host) becomes 127.0.0.1, and the run's own
token and user are never the ones deleted or changed.
"""
import os

import schemathesis

LOOPBACK = "127.0.0.1"
# Nothing listens on port 9 (discard) here: a delivery or a test of a channel fails at once.
LOOPBACK_URL = "http://127.0.0.1:9/"
# Path parameters reach the hook as the strings they are sent as.
PROTECTED = {"token_id": os.environ.get("STEWARD_CONTRACT_TOKEN_ID", "0"),
             "user_id": os.environ.get("STEWARD_CONTRACT_USER_ID", "0")}


def _keep_local(body):
    if not isinstance(body, dict):
        return
    settings = body.get("settings")
    if isinstance(settings, dict):  # a notification channel's
        if "url" in settings:
            settings["url"] = LOOPBACK_URL
        if "host" in settings:
            settings["host"] = LOOPBACK
    rabbitmq = body.get("rabbitmq")
    if isinstance(rabbitmq, dict) and "host" in rabbitmq:  # PATCH /settings
        rabbitmq["host"] = LOOPBACK
    if "host" in body:  # POST /settings/rabbitmq/test
        body["host"] = LOOPBACK


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    _keep_local(case.body)
    for name, protected in PROTECTED.items():
        if case.method in ("DELETE", "PATCH") and str((case.path_parameters or {}).get(name)) == protected:
            case.path_parameters[name] = str(int(protected) + 1_000_000)  # nobody's: a 404
