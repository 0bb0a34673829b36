"""The notifier on the real broker and database, against a real SMTP server and HTTP receiver."""
import json
import time
from email import policy
from email.parser import BytesParser

from services.notifier.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.notifier.conftest import (FAST_POLICY, NOTIFIER_QUEUES, deliveries, down, email_channel,
                                     purge_notifier_queues, rule, wait_for, webhook_channel)
from tests.queues import queue_depth


def _delivered(rpc, admin, count):
    return wait_for(lambda: (lambda rows: rows if len(rows) >= count else None)(
        deliveries(rpc, admin, status="delivered")), what=f"{count} delivered")


def _handled(settings, event):
    """Every ``event`` sent so far is handled: its queue is empty and nothing is unacknowledged
    (the notifier acknowledges an event once its outcome is committed)."""
    queue = next(name for name in NOTIFIER_QUEUES if name.endswith(f"handle_{event}"))
    wait_for(lambda: queue_depth(settings, queue) == (0, 0), what=f"every {event} handled")


def test_a_server_going_down_sends_exactly_one_email(rpc, admin, settings, notifier, smtp, emit):
    channel = email_channel(rpc, admin, smtp)
    rule(rpc, admin, [channel], event_types=["server_state_changed"], min_severity="critical")

    def subjects_once(subject):
        """Every email's subject, once the one with ``subject`` has arrived."""
        return wait_for(lambda: (lambda subjects: subject in subjects and subjects)(
            [m["Subject"] for m in smtp.messages()]), what=subject)

    emit("server_state_changed", **down(7, "dns-berlin-1"))
    emit("server_state_changed", **down(7, "dns-berlin-1"))  # monitoring said it twice: still one change

    assert subjects_once("[Steward] dns-berlin-1 is DOWN") == ["[Steward] dns-berlin-1 is DOWN"]
    [message] = smtp.messages()
    assert message["To"] == "ops@example.net"
    body = BytesParser(policy=policy.default).parsebytes(message.as_bytes()).get_body().get_content()
    assert "dns-berlin-1 (id 7) stopped sending heartbeats" in body
    assert "What to do:" in body
    assert "https://steward.example.net/api/v2/servers/7" in body

    [logged] = _delivered(rpc, admin, 1)
    assert logged["item_count"] == 1
    assert logged["subject"] == message["Subject"] and logged["server_ids"] == [7]
    detail = rpc.call("notifier", "get_delivery", admin, logged["id"])
    assert [a["ok"] for a in detail["attempt_log"]] == [True]
    assert "accepted 1 recipient" in detail["attempt_log"][0]["result"]

    # The repeat is handled; another server's change after it is mailed after anything the repeat made.
    _handled(settings, "server_state_changed")
    emit("server_state_changed", **down(8, "dns-berlin-2"))
    assert sorted(subjects_once("[Steward] dns-berlin-2 is DOWN")) == [
        "[Steward] dns-berlin-1 is DOWN", "[Steward] dns-berlin-2 is DOWN"]

    # Up again is info: below this rule's severity, so no email.
    emit("server_state_changed", server_id=7, server_name="dns-berlin-1", previous_state="down", state="up")
    _handled(settings, "server_state_changed")
    emit("server_state_changed", **down(9, "dns-berlin-3"))
    assert sorted(subjects_once("[Steward] dns-berlin-3 is DOWN")) == [
        "[Steward] dns-berlin-1 is DOWN", "[Steward] dns-berlin-2 is DOWN", "[Steward] dns-berlin-3 is DOWN"]


def test_webhook_is_signed_and_a_tampered_body_fails_verification(rpc, admin, notifier, receiver, emit):
    secret = "s3cret-signing-key-0123"
    channel = webhook_channel(rpc, admin, receiver, secret=secret)
    assert "secret" not in channel["settings"] and channel["settings"]["secret_set"] is True
    rule(rpc, admin, [channel])

    emit("disk_low", server_id=3, server_name="kea-2", mountpoint="/var", free_percent=3.5)
    wait_for(lambda: receiver.requests, what="a webhook POST")
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    now = time.time()
    assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now)
    payload = json.loads(body)
    assert payload["subject"] == "[Steward] Disk low on kea-2: /var 3.5% free"
    assert payload["events"][0]["server_id"] == 3 and payload["severity"] == "warning"
    assert headers[DELIVERY_HEADER] == str(payload["delivery_id"])

    tampered = body.replace(b"3.5", b"35.0")
    assert not verify(secret, headers[TIMESTAMP_HEADER], tampered, headers[SIGNATURE_HEADER], now)
    assert not verify("another-secret-of-16+", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now)
    # A replay with the old signature after the tolerance is refused too.
    assert not verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now + 600)


def test_with_the_receiver_down_the_delivery_retries_and_lands_when_it_is_back(rpc, admin, notifier, receiver, emit):
    channel = webhook_channel(rpc, admin, receiver)
    rule(rpc, admin, [channel])
    receiver.stop()

    emit("backup_failed", backup_server_id=4, backup_server_name="backup-1", backup_id="b-77", error="disk full")
    failing = wait_for(lambda: [d for d in deliveries(rpc, admin) if d["attempts"] >= 2], what="two failed attempts")
    assert failing[0]["status"] == "pending" and "connection failed" in failing[0]["last_error"]

    receiver.start()
    [delivered] = _delivered(rpc, admin, 1)
    detail = rpc.call("notifier", "get_delivery", admin, delivered["id"])
    outcomes = [a["ok"] for a in detail["attempt_log"]]
    assert outcomes[-1] is True and outcomes.count(True) == 1 and outcomes.count(False) >= 2
    assert len(receiver.requests) == 1
    assert receiver.json_bodies()[0]["subject"] == "[Steward] Backup on backup-1 FAILED"


def test_a_dead_lettered_delivery_is_retried_by_hand(rpc, admin, notifier, receiver, emit):
    channel = webhook_channel(rpc, admin, receiver)
    rule(rpc, admin, [channel])
    receiver.stop()

    emit("update_rolled_back", server_id=9, server_name="dns-9", task_id="u-1", state="rolled_back", error=None,
         component="dns", failed_version="3.3.1", restored_version="3.2.6", reason="pvverify.test did not answer PVOK")
    [dead] = wait_for(lambda: deliveries(rpc, admin, status="dead"), what="a dead letter")
    assert dead["attempts"] == 4  # FAST_POLICY's max_attempts

    receiver.start()
    # A later delivery goes out; the dead letter, due long before it, must not go with it.
    emit("disk_low", server_id=10, server_name="dns-10", mountpoint="/", free_percent=2.0)
    wait_for(lambda: receiver.requests, what="the later delivery")
    assert [e["server_id"] for body in receiver.json_bodies() for e in body["events"]] == [10]
    retried = rpc.call("notifier", "retry_delivery", admin, dead["id"])
    assert retried["status"] == "pending" and retried["attempts"] == 0
    _delivered(rpc, admin, 2)
    assert [body["delivery_id"] for body in receiver.json_bodies()][1:] == [dead["id"]]
    detail = rpc.call("notifier", "get_delivery", admin, dead["id"])
    assert [a["ok"] for a in detail["attempt_log"]] == [False] * 4 + [True]


def test_two_hundred_servers_going_down_give_one_digest_per_channel(rpc, admin, settings, smtp, receiver, emit,
                                                                    start_service):
    from services.notifier.service import NotifierService

    # Two replicas compete for the same events and deliveries: windows live in rows, not in memory.
    # A 5 s quiet gap leaves room for a loaded machine to pause between events of the burst (1 s failed
    # once at a load average of 20 on two cores).
    purge_notifier_queues(settings.amqp_uri)
    for _ in range(2):
        start_service(NotifierService, {"notifier": dict(FAST_POLICY, digest_window_seconds=5.0)})
    mail = email_channel(rpc, admin, smtp)
    hook = webhook_channel(rpc, admin, receiver)
    rule(rpc, admin, [mail, hook], event_types=["server_state_changed"])

    for server_id in range(1, 201):
        emit("server_state_changed", **down(server_id, f"site-a-{server_id:03d}"))

    delivered = wait_for(lambda: (lambda rows: rows if sum(d["item_count"] for d in rows) == 400 else None)(
        deliveries(rpc, admin, status="delivered")), timeout=30, what="all 400 items delivered")
    per_channel = {name: [d for d in delivered if d["channel_name"] == name] for name in ("ops-mail", "ops-hook")}
    assert {name: [d["item_count"] for d in rows] for name, rows in per_channel.items()} == \
        {"ops-mail": [200], "ops-hook": [200]}
    [digest] = smtp.messages()
    assert digest["Subject"] == "[Steward] 200 events: 200 server state changed"
    assert len(receiver.requests) == 1
    servers = sorted(s for body in receiver.json_bodies() for s in (e["server_id"] for e in body["events"]))
    assert servers == list(range(1, 201))  # every server once, none twice
