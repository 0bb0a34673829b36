"""A deleted server leaves no broker user, agent token or agent connection behind, in every case;
a new bundle replaces them. No lab host: nothing is installed here, which is the case that leaked."""
import io
import json
import tarfile
from urllib.parse import unquote, urlsplit

import pika
import pytest

from gateway.routes import PREFIX
from services.provisioner.rabbitmq_users import RabbitMQUsers
from tests.events import event_sender
from tests.waiting import wait_for


@pytest.fixture
def broker_users(settings, api):
    """The agents' users of this run's vhost, as the provisioner sees them (the api fixture set the vhost).
    Earlier tests' servers went with their tables, not through a delete, and ids start again at 1:
    their users go first."""
    users = RabbitMQUsers("http://127.0.0.1:15672", "guest", "guest",
                          unquote(urlsplit(settings.amqp_uri).path.lstrip("/")) or "/")
    for server_id in users.agent_server_ids():
        users.delete_agent_user(server_id)
    return users


def new_server(api, name):
    created = api.simulate_post(f"{PREFIX}/servers", json={"name": name, "address": "127.0.0.1", "os": "ubuntu"})
    assert created.status_code == 201, created.text
    return created.json["id"]


def bundle_config(api, server_id):
    """Download the setup bundle, as an operator does for a manual install: its agent.json."""
    response = api.simulate_get(f"{PREFIX}/servers/{server_id}/bundle")
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        return json.load(tar.extractfile(f"setup-{server_id}/config/agent.json"))


def agent_connection(settings, config):
    """What the installed agent would hold: a broker connection with the bundle's credentials."""
    parameters = pika.URLParameters(settings.amqp_uri)
    parameters.credentials = pika.PlainCredentials(config["rabbitmq"]["user"], config["rabbitmq"]["password"])
    return pika.BlockingConnection(parameters)


def closed_by_broker(connection):
    try:
        connection.process_data_events(time_limit=0.1)
    except pika.exceptions.AMQPConnectionError:
        return True
    return connection.is_closed


def heartbeat_status(api, config):
    # Any body: the token is judged first.
    return api.simulate_post(f"{PREFIX}/monitoring/heartbeat", json={},
                             headers={"Authorization": f"Bearer {config['agent_token']}"}).status_code


def test_deleting_a_server_removes_its_broker_user_tokens_and_connections_in_every_case(settings, api, rpc, admin,
                                                                                         broker_users):
    # Never installed, bundle downloaded: the case whose user survived.
    downloaded = new_server(api, "downloaded")
    config = bundle_config(api, downloaded)
    connection = agent_connection(settings, config)
    assert heartbeat_status(api, config) == 400
    assert api.simulate_delete(f"{PREFIX}/servers/{downloaded}").status_code == 204
    wait_for(lambda: closed_by_broker(connection), what="the agent's broker connection to be closed")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        agent_connection(settings, config)
    assert heartbeat_status(api, config) == 401

    # Deleted without the provisioner's cleanup (it was away): its server_deleted event removes the user.
    skipped = new_server(api, "skipped")
    bundle_config(api, skipped)
    rpc.call("inventory", "delete_server", admin, skipped)
    wait_for(lambda: skipped not in broker_users.agent_server_ids(), what="the event to remove the user")

    # Nothing at all: nothing to remove, and nothing appears.
    bare = new_server(api, "bare")
    assert api.simulate_delete(f"{PREFIX}/servers/{bare}").status_code == 204

    kept = new_server(api, "kept")
    bundle_config(api, kept)
    # What a reconcile would look for: no broker user and no agent token of a server inventory does not have.
    existing = [s["id"] for s in api.simulate_get(f"{PREFIX}/servers").json["items"]]
    assert broker_users.leftover_server_ids(lambda: existing) == [] and broker_users.agent_server_ids() == [kept]
    assert [t["name"] for t in api.simulate_get(f"{PREFIX}/tokens").json if t["scope"] == "agent"] == ["agent kept"]


def test_a_new_bundle_replaces_the_broker_password_token_and_connections(settings, api, broker_users):
    server = new_server(api, "reissued")
    old = bundle_config(api, server)
    connection = agent_connection(settings, old)
    new = bundle_config(api, server)

    assert new["rabbitmq"]["user"] == old["rabbitmq"]["user"] and new["rabbitmq"]["password"] != old["rabbitmq"]["password"]
    wait_for(lambda: closed_by_broker(connection), what="the old bundle's broker connection to be closed")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        agent_connection(settings, old)
    agent_connection(settings, new).close()
    assert heartbeat_status(api, old) == 401 and heartbeat_status(api, new) == 400
    assert broker_users.agent_server_ids() == [server]


def test_a_server_that_reported_but_cannot_be_reached_says_what_stayed(settings, api, broker_users):
    """Installed by hand (its heartbeats reported its components), then unreachable over SSH: the delete
    still removes the record and the broker user, and says plainly that the server itself kept its install."""
    created = api.simulate_post(f"{PREFIX}/servers", json={"name": "gone-dark", "address": "127.0.0.1",
                                                          "ssh_port": 1, "os": "ubuntu"})
    server = created.json["id"]
    bundle_config(api, server)  # its broker user, as a manual install's bundle makes it
    # What monitoring-ingest says after the server's first heartbeat (tests/monitoring covers that path).
    event_sender(settings, "monitoring_ingest")("server_versions_reported", server_id=server, server_name="gone-dark",
                                                versions={"dns": "3.2.6"})
    wait_for(lambda: api.simulate_get(f"{PREFIX}/servers/{server}").json["state"] == "running",
             what="the reported components recorded")

    deleted = api.simulate_delete(f"{PREFIX}/servers/{server}")
    assert deleted.status_code == 200, deleted.text
    cleanup = deleted.json["cleanup"]
    assert (cleanup["uninstalled"], cleanup["rabbitmq_user_removed"]) == (False, True)
    assert len(cleanup["problems"]) == 1 and cleanup["problems"][0].startswith(
        "could not remove the agent and components: "), cleanup
    assert "127.0.0.1" in cleanup["problems"][0]
    assert api.simulate_get(f"{PREFIX}/servers/{server}").status_code == 404
    assert server not in broker_users.agent_server_ids()
