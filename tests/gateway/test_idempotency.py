"""Creates with an Idempotency-Key through the real app and services: a repeat gets the first answer and
makes nothing more; the key with another body is a 422; the RPC redelivered by the broker after its
reply was lost gets the first answer too, not a 409."""
import socket
import uuid

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from sqlalchemy import text

from gateway.routes import PREFIX
from shared.rpc import DEADLINE_HEADER, IDEMPOTENCY_KEY_HEADER, RPC_EXCHANGE
from tests.waiting import wait_for

NEW_SERVER = {"name": "dns-once", "address": "10.0.0.9", "os": "ubuntu", "ssh_password": "hunter2-secret"}


def _keyed(auth, key):
    return {**auth, "Idempotency-Key": key}


def _count(engine, table):
    with engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_a_repeated_create_gets_the_first_answer_and_makes_nothing_more(client, auth, engine):
    key = str(uuid.uuid4())
    first = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=_keyed(auth, key))
    again = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=_keyed(auth, key))
    assert first.status_code == again.status_code == 201, again.text
    assert again.json == first.json and again.headers["location"] == first.headers["location"]
    assert _count(engine, "inventory.servers") == 1

    other = client.simulate_post(f"{PREFIX}/servers", json=dict(NEW_SERVER, address="10.0.0.10"),
                                 headers=_keyed(auth, key))
    assert other.status_code == 422 and other.json["error"] == "idempotency_key_reused", other.text
    assert "Idempotency-Key" in other.json["message"] and other.json["details"]
    # Without a key the same body is a new request, refused as a duplicate as before.
    duplicate = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=auth)
    assert duplicate.status_code == 409 and duplicate.json["error"] == "duplicate_name"
    assert _count(engine, "inventory.servers") == 1


def test_a_failed_create_keeps_nothing_so_its_retry_runs(client, auth, engine):
    taken = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=auth).json
    key = str(uuid.uuid4())
    refused = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=_keyed(auth, key))
    assert refused.status_code == 409 and refused.json["error"] == "duplicate_name"
    assert client.simulate_delete(f"{PREFIX}/servers/{taken['id']}", headers=auth).status_code == 204
    retried = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=_keyed(auth, key))
    assert retried.status_code == 201 and retried.json["id"] != taken["id"]  # judged again, not replayed


def test_each_service_keeps_its_own_creates_keys(client, auth, engine, all_services):
    channel = {"name": "ops", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook", "secret": "s" * 16}}
    key = str(uuid.uuid4())
    answers = [client.simulate_post(f"{PREFIX}/notifications/channels", json=channel, headers=_keyed(auth, key))
               for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201] and answers[0].json == answers[1].json, answers[1].text
    assert _count(engine, "notifier.channels") == _count(engine, "notifier.idempotency_keys") == 1
    # The same key for another operation (and service) is another request.
    rule = {"name": "all", "channel_ids": [answers[0].json["id"]]}
    made = client.simulate_post(f"{PREFIX}/notifications/rules", json=rule, headers=_keyed(auth, key))
    assert made.status_code == 201, made.text


def test_a_new_tokens_secret_comes_back_to_a_repeat_and_is_kept_sealed(client, auth, engine):
    key = str(uuid.uuid4())
    first = client.simulate_post(f"{PREFIX}/tokens", json={"name": "ci"}, headers=_keyed(auth, key))
    again = client.simulate_post(f"{PREFIX}/tokens", json={"name": "ci"}, headers=_keyed(auth, key))
    assert first.status_code == again.status_code == 201 and again.json == first.json
    secret = first.json["token"]
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT answer::text FROM inventory.idempotency_keys")).scalar_one()
    assert secret not in kept
    listed = client.simulate_get(f"{PREFIX}/tokens", headers=auth).json
    assert [t["name"] for t in listed].count("ci") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "two words"])
def test_a_malformed_key_is_a_400(client, auth, key, engine):
    response = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=_keyed(auth, key))
    assert response.status_code == 400 and "Idempotency-Key" in response.json["details"], response.text
    assert _count(engine, "inventory.servers") == 0


def test_the_create_rpc_redelivered_after_its_reply_was_lost_answers_as_the_first_time(settings, admin, engine):
    """The broker delivers a request again when the service's channel closed after the create committed
    and before the ack (so its reply never left, or was lost): the same message, key and all, arrives
    twice. Without the key the second delivery ran the create again and answered duplicate_name."""
    exchange = Exchange(RPC_EXCHANGE, type="topic", durable=True)
    with Connection(settings.amqp_uri) as connection:
        replies = Queue(f"tests.replies.{uuid.uuid4().hex[:8]}", exchange, routing_key=uuid.uuid4().hex,
                        exclusive=True)
        answers = []
        with Consumer(connection, [replies], callbacks=[lambda body, message: answers.append(body)], no_ack=True,
                      accept=["json"]):
            headers = {DEADLINE_HEADER: 2e9, IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4())}
            with Producer(connection.default_channel, exchange=exchange, serializer="json") as producer:
                for _ in range(2):
                    producer.publish({"args": [admin, NEW_SERVER], "kwargs": {}}, routing_key="inventory.create_server",
                                     reply_to=replies.routing_key, correlation_id="create-1", headers=headers)

            def both_answered():
                try:
                    connection.drain_events(timeout=0.5)
                except socket.timeout:
                    pass
                return len(answers) == 2

            wait_for(both_answered, what="both deliveries answered")
    assert answers[0]["error"] is None and answers[1] == answers[0]
    assert _count(engine, "inventory.servers") == 1
