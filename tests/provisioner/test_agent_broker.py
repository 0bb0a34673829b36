"""Agents are given the broker address of the admin settings, not the control plane's own: a lab host that
reaches RabbitMQ only at its routed address (the veth's far end) is push-installed and its statistics arrive."""
import json

import pytest
from sqlalchemy import text

from gateway.routes import PREFIX
from tests.forwarder import Forwarder
from tests.provisioner.conftest import push_install, register, wait_for_task
from tests.waiting import wait_for


@pytest.fixture
def routed_broker(lab):
    """The machine's RabbitMQ listens on loopback only: this carries the lab host's AMQP to it, at the one
    address the lab host can reach (nothing on the lab host's own 127.0.0.1 is a broker)."""
    forwarder = Forwarder(("127.0.0.1", 5672), address=lab.host_address, port=5672)
    yield lab.host_address
    forwarder.cut()


def test_a_push_install_gives_the_agent_the_routed_broker_address_and_its_statistics_arrive(
        api, lab, routed_broker, monitoring, engine):  # noqa: F811
    changed = api.simulate_patch(f"{PREFIX}/settings", json={"rabbitmq": {"host": routed_broker},
                                                             "monitoring": {"system_interval_seconds": 5}})
    assert changed.status_code == 200, changed.text
    assert changed.json["rabbitmq"]["host"] == routed_broker and changed.json["rabbitmq"]["management_url"] is None

    server = register(api, lab, components=["dns", "monitor"])
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    # Before, the agent's user was made through the management API at the agents' address, with an
    # account that works from loopback only: the install failed at its first step.
    assert finished["state"] == "succeeded", finished["error"]
    config = json.loads((lab.prefix / "etc" / "steward" / "agent.json").read_text())
    assert (config["rabbitmq"]["host"], config["rabbitmq"]["port"]) == (routed_broker, 5672)

    def samples():
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s"),
                                      {"s": server["id"]}).scalar()

    wait_for(samples, timeout=90, interval=0.5, what="the agent's system statistics, pushed over AMQP")
    shown = api.simulate_get(f"{PREFIX}/monitoring/servers/{server['id']}/system").json
    assert shown["points"], shown


def test_the_management_endpoint_is_a_setting_of_its_own(api):
    bad = api.simulate_patch(f"{PREFIX}/settings", json={"rabbitmq": {"management_url": "not a url"}})
    assert bad.status_code == 400 and "management_url" in bad.json["details"]["rabbitmq"]
    good = api.simulate_patch(f"{PREFIX}/settings", json={"rabbitmq": {"management_url": "http://127.0.0.1:15672"}})
    assert good.status_code == 200 and good.json["rabbitmq"]["management_url"] == "http://127.0.0.1:15672"
