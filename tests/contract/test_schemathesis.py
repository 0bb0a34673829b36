"""The OpenAPI document is true: schemathesis drives a live stack (`make up`, the stack as it runs) with
requests generated from the document, valid and not, and any 5xx, status the document does not list, or
answer that does not match its schema fails the test.

Every operation takes part but those that start work over SSH on a managed server (installs, updates,
diagnostics, rollouts, and deleting a server, which uninstalls it first). The seed and the number of
examples are fixed, so a run is repeatable and takes a few minutes.
"""
import json
import re
import subprocess
import sys

import psycopg2
import pytest

from tests.conftest import management_api
from tests.stack import ROOT, stack_env
from tests.updater.conftest import Registry

SEED = 20261129
EXAMPLES = 40
SSH_WORK = [r"/actions/push-install$", r"/actions/push-update$", r"/actions/diagnostics$", r"/rollouts$",
            r"/actions/resume$"]
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"


@pytest.fixture
def registry():
    """Internet mode's version registry, on loopback and open to anyone (the run may set any token)."""
    server = Registry()
    yield server
    server.close()


@pytest.fixture
def stack(tmp_path, rabbitmq_management, registry):
    # Few database connections: the run shares PostgreSQL with whatever else runs on the machine. It shares the two
    # cores too (make test runs three groups at once): an answer may take longer than the default 10 s, and a 503
    # for that says nothing about the document (schemathesis itself waits 30 s, --request-timeout).
    with stack_env("contract", tmp_path / "state", STEWARD_REGISTRY_URL=registry.url,
                   STEWARD_UPDATER_STORAGE=str(tmp_path / "images"), STEWARD_DB_POOL_SIZE="2",
                   STEWARD_MAX_WORKERS="4", STEWARD_RPC_TIMEOUT="25") as env:
        up = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr + _logs(tmp_path)
        yield env, re.search(r"API URL:\s+(\S+)", up.stdout)[1]
        vhost = env["STEWARD_AMQP_VHOST"]
        for user in management_api("GET", "/users"):  # what bundles made on the broker, which outlives the stack
            if user["name"].startswith(f"steward-agent-{vhost}-"):
                management_api("DELETE", f"/users/{user['name']}")


def _logs(tmp_path, tail=3000):
    """The end of each process's log in the stack."""
    return "".join(f"\n--- {log.name}\n" + log.read_text()[-tail:]
                   for log in sorted((tmp_path / "state" / "logs").glob("*.log")))


def _admin(env):
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=env["STEWARD_DB_NAME"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, user_id FROM inventory.api_tokens")
            return cursor.fetchone()


@pytest.mark.e2e
def test_the_api_answers_generated_requests_as_its_openapi_document_says(stack, tmp_path):
    env, api_url = stack
    token = (tmp_path / "state" / "admin-token").read_text().strip()
    token_id, user_id = _admin(env)
    report = tmp_path / "report.ndjson"
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{api_url}/openapi.json",
         "--header", f"Authorization: Bearer {token}", "--checks", CHECKS, "--seed", str(SEED),
         "--max-examples", str(EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
         "--no-shrink", "--exclude-path-regex", "|".join(SSH_WORK),
         "--exclude-by", 'method == "DELETE" and path == "/api/v2/servers/{server_id}"',
         "--request-timeout", "30", "--report", "ndjson", "--report-ndjson-path", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,  # its caches (.hypothesis) go there too
        env=dict(env, SCHEMATHESIS_HOOKS="tests.contract.schemathesis_hooks", STEWARD_CONTRACT_TOKEN_ID=str(token_id),
                 STEWARD_CONTRACT_USER_ID=str(user_id), PYTHONPATH=str(ROOT)))
    summary = run.stdout[run.stdout.find("SUMMARY"):]
    tested = re.search(r"Tested:\s+(\d+)", summary)
    cases = re.search(r"(\d+) generated", summary)
    print(f"schemathesis: {tested and tested[1]} operations tested, {cases and cases[1]} cases, exit {run.returncode}")
    print(summary)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:] + _logs(tmp_path)
    documented = json.loads(subprocess.run(["curl", "-sf", f"{api_url}/openapi.json"], capture_output=True,
                                           text=True, check=True).stdout)
    operations = sum(len(methods) for methods in documented["paths"].values())
    assert int(tested[1]) == operations - len(SSH_WORK) - 1, summary  # all but the SSH ones and DELETE /servers/{id}
    assert int(cases[1]) >= 3000, summary
