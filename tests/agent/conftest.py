"""Fixtures around agent_lab: every process they start is stopped after the test."""
import os
import shutil
import sys
import tempfile

import pytest

from agent_lab import AgentProcess, Knot, PrivateBroker


@pytest.fixture
def agent_process(tmp_path):
    agents = []

    def start(mode="stats", python=sys.executable, env=None, **config):
        agent = AgentProcess(str(tmp_path), python=python, env=env).start(mode, **config)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def knot_factory():
    """knotd on loopback, writing dnstap to a socket the agent must already listen on."""
    started = []

    def start(dnstap_socket, agent):
        directory = os.path.dirname(dnstap_socket)
        knot = Knot(os.path.join(directory, "knot"), dnstap_socket)
        os.makedirs(knot.directory, exist_ok=True)
        started.append(knot)
        knot.start()
        agent.wait_for_knot()
        return knot

    yield start
    for knot in started:
        knot.stop()


@pytest.fixture
def private_broker():
    if not shutil.which("rabbitmq-server"):
        pytest.fail("rabbitmq-server is not installed (see .ci/run)")
    # Not under tmp_path: pytest's base directory is private to root, and the node runs as rabbitmq.
    directory = tempfile.mkdtemp(prefix="steward-agent-rabbitmq-")
    os.chmod(directory, 0o755)
    broker = PrivateBroker(directory)
    try:
        broker.start()
        yield broker
    finally:
        if os.path.exists(broker.env["RABBITMQ_PID_FILE"]):
            broker.ctl("stop", broker.env["RABBITMQ_PID_FILE"])
        shutil.rmtree(directory, ignore_errors=True)
