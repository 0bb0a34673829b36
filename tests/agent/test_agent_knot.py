"""The agent against a real knotd with mod-dnstap: N queries sent are N hits counted,
with the right last access, read back through the pull endpoint over HTTP."""
import os
import sys

import pytest

from agent_lab import (EXPECTED_HITS, PLAN, REPO, assert_contiguous, dns_totals, free_port, http_get, last_dns_seq,
                       send_queries, wait_for)

# The agent ships to hosts with Python 3.8 (README): it runs there too, in every run.
PYTHON38 = os.environ.get("STEWARD_PYTHON38", os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python3.8"))
INTERPRETERS = [pytest.param(sys.executable, id="python3"), pytest.param(PYTHON38, id="python3.8")]


def installed(python):
    """``python``, or the test fails (never skips): the promise is tested wherever the suite runs."""
    if not os.access(python, os.X_OK):
        pytest.fail("the agent must run on Python 3.8 and no interpreter is at %s: install one "
                    "(e.g. `pyenv install 3.8.18`) or set STEWARD_PYTHON38 to a python3.8" % python, pytrace=False)
    return python


def pika_only_path(directory):
    """A PYTHONPATH with nothing but pika, as the setup bundle ships it."""
    import pika

    os.makedirs(directory)
    os.symlink(os.path.dirname(pika.__file__), os.path.join(directory, "pika"))
    return directory


def poll_all(url, token, cursor, messages):
    while True:
        status, page = http_get("%s?after=%d&limit=50" % (url, cursor), token)
        assert status == 200
        messages += page["items"]
        if not page["items"]:
            return cursor
        cursor = page["next_cursor"]


@pytest.mark.parametrize("python", INTERPRETERS)
def test_queries_to_knot_are_counted_exactly(python, tmp_path, agent_process, knot_factory):
    dnstap_socket = str(tmp_path / "dnstap.sock")
    port = free_port()
    agent = agent_process(
        "stats",
        python=installed(python),
        env={"PYTHONPATH": REPO + os.pathsep + pika_only_path(str(tmp_path / "bundle"))},
        server_id=5,
        agent_token="agent-secret",
        communication_type="pull",
        dns_interval_seconds=0.3,
        system_interval_seconds=0.5,
        dnstap_socket=dnstap_socket,
        spool_dir=str(tmp_path / "spool"),
        pull_listen="127.0.0.1",
        pull_port=port,
    )
    wait_for(lambda: os.path.exists(dnstap_socket), what="the agent's dnstap socket")
    knot = knot_factory(dnstap_socket, agent)
    last_sent = send_queries(knot, PLAN)

    url = "http://127.0.0.1:%d/v1/stats" % port
    messages = []
    state = {"cursor": 0}

    def all_counted():
        state["cursor"] = poll_all(url, "agent-secret", state["cursor"], messages)
        return dns_totals(messages)[2] >= 15

    wait_for(all_counted, timeout=20, interval=0.2, what="15 queries counted")
    # Three more DNS periods closed after that: a query counted twice would be in one of them.
    counted_at = last_dns_seq(messages)
    wait_for(lambda: all_counted() and last_dns_seq(messages) >= counted_at + 3, timeout=20, interval=0.2,
             what="three more DNS periods")

    hits, last_access, total = dns_totals(messages)
    assert total == 15
    assert hits == EXPECTED_HITS
    for key, (before, after) in last_sent.items():
        assert before <= last_access[key] <= after, key  # Knot's own time of the last query
    assert_contiguous(messages, "dns")
    systems = assert_contiguous(messages, "system")
    assert systems and all(m["server_id"] == 5 and len(m["data"]["load"]) == 3 for m in systems)
    assert "agent-secret" not in agent.log()
    assert agent.stop() == 0


def test_an_agent_restart_keeps_what_was_counted_and_knot_writes_to_the_new_agent(tmp_path, agent_process, knot_factory):
    dnstap_socket, port = str(tmp_path / "dnstap.sock"), free_port()
    config = dict(server_id=5, agent_token="agent-secret", communication_type="pull", dns_interval_seconds=0.3,
                  system_interval_seconds=60, dnstap_socket=dnstap_socket, spool_dir=str(tmp_path / "spool"),
                  pull_listen="127.0.0.1", pull_port=port)
    agent = agent_process("stats", **config)
    wait_for(lambda: os.path.exists(dnstap_socket), what="the agent's dnstap socket")
    knot = knot_factory(dnstap_socket, agent)
    send_queries(knot, [("www.test", "A", 3)])
    assert agent.stop() == 0  # before Knot delivered them: the agent waits for its writer on the way out
    agent = agent_process("stats", **config)
    wait_for(lambda: os.path.exists(dnstap_socket), what="the new agent's dnstap socket")

    def reconnected():
        # knotd reconnects only when it has a query to write (and drops the queries of the gap).
        send_queries(knot, [("ns.test", "A", 1)])
        return agent.log().count("dnstap writer connected") == 2

    wait_for(reconnected, timeout=20, interval=0.5, what="knotd to reconnect")
    send_queries(knot, [("mail.test", "MX", 2)])
    url = "http://127.0.0.1:%d/v1/stats?limit=1000" % port

    items = wait_for(lambda: (lambda items: ("mail.test.", "MX") in dns_totals(items)[0] and items)(
        http_get(url, "agent-secret")[1]["items"]), what="the MX queries")
    # Two more DNS periods closed after that: a query counted twice would be in one of them.
    items = wait_for(lambda: (lambda later: last_dns_seq(later) >= last_dns_seq(items) + 2 and later)(
        http_get(url, "agent-secret")[1]["items"]), what="two more DNS periods")
    hits, _, total = dns_totals(items)
    reconnect_probes = hits.pop(("ns.test.", "A"), 0)
    assert hits == {("www.test.", "A"): 3, ("mail.test.", "MX"): 2}
    assert total == 5 + reconnect_probes


def test_agent_refuses_a_bad_configuration(agent_process):
    agent = agent_process("stats", server_id=5)
    agent.process.wait(10)
    assert agent.process.returncode == 2
    assert "missing keys: agent_token" in agent.log()
