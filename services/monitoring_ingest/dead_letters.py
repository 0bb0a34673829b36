"""Dead letters: agent messages the consumer refused, kept where it put them (``monitoring.dead``) with the
reason, and listed, shown, retried or dropped by an admin (Synnefo's queue-inspect and queue-retry).

The queue stays the store: a listing takes up to SCAN_LIMIT messages without acknowledging them and the
channel's close puts them back in their order, so nothing is copied and nothing can be lost between two
stores. A letter is named by the ``message_id`` the consumer gave it (by the hash of its routing key and
body when something else dead-lettered it). A retry first runs the consumer's own checks (the body, its
age, its sender against its routing key): one it would refuse again is refused here, with that reason.
Then it goes back to the agent exchange as the control plane relays it (the poller's way) and leaves
this queue.
"""
import hashlib
from datetime import datetime, timezone

from kombu import Connection

from services.monitoring_ingest.exceptions import MalformedMessage
from services.monitoring_ingest.ingest import Senders, parse
from services.monitoring_ingest.topology import REASON_HEADER, SENDER_HEADER
from shared.errors import DeadLetterNotFound, WouldBeRefusedAgain
from shared.schemas.agent import EXCHANGE
from shared.schemas.monitoring import DEAD_LETTER_QUEUES
SCAN_LIMIT = 10_000


def letter_id(message):
    given = message.properties.get("message_id")
    if given:
        return given
    key = message.delivery_info.get("routing_key", "")
    return hashlib.sha256(key.encode() + b"\0" + message.body).hexdigest()[:32]


def describe(queue, message, with_body=False):
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]  # RabbitMQ's own dead-lettering (rejected, expired) says why here
    stamp = message.properties.get("timestamp") or deaths[0].get("time")
    if isinstance(stamp, (int, float)):
        stamp = datetime.fromtimestamp(stamp, timezone.utc)
    letter = {
        "id": letter_id(message),
        "queue": queue,
        "routing_key": message.delivery_info.get("routing_key"),
        "reason": headers.get(REASON_HEADER) or deaths[0].get("reason") or "unknown",
        "sender": headers.get(SENDER_HEADER) or None,
        "dead_lettered_at": stamp,
        "size_bytes": len(message.body),
    }
    if with_body:
        letter["body"] = message.body.decode("utf-8", errors="replace")
    return letter


class DeadLetters:
    """``amqp_uri`` is the control plane's own broker connection; its user relays a retried message."""

    def __init__(self, amqp_uri, scan_limit=SCAN_LIMIT, clock=lambda: datetime.now(timezone.utc)):
        self.amqp_uri = amqp_uri
        self.scan_limit = scan_limit
        self.clock = clock

    def _scan(self, queues, visit):
        """Calls ``visit(queue, message)`` for each letter in order until it returns True; unacknowledged
        letters go back when the channel closes."""
        with Connection(self.amqp_uri) as connection:
            for queue in queues:
                channel = connection.channel()
                try:
                    for _ in range(self.scan_limit):
                        message = channel.basic_get(queue, no_ack=False)
                        if message is None:
                            break
                        if visit(queue, message):
                            return
                finally:
                    channel.close()

    def list(self, queue=None, limit=100):
        """(the first ``limit`` letters, how many there are in all, up to the scan limit)."""
        found = []
        counted = [0]

        def visit(queue_name, message):
            counted[0] += 1
            if len(found) < limit:
                found.append(describe(queue_name, message))
            return False

        self._scan([queue] if queue else DEAD_LETTER_QUEUES, visit)
        return found, counted[0]

    def _take(self, letter_id_wanted, act):
        """Finds one letter and calls ``act(queue, message)`` on it while the ones before it are held."""
        result = []

        def visit(queue, message):
            if letter_id(message) != letter_id_wanted:
                return False
            result.append(act(queue, message))
            return True

        self._scan(DEAD_LETTER_QUEUES, visit)
        if not result:
            raise DeadLetterNotFound(f"no dead letter {letter_id_wanted} (retried or dropped already?)")
        return result[0]

    def show(self, letter_id_wanted):
        return self._take(letter_id_wanted, lambda queue, message: describe(queue, message, with_body=True))

    def drop(self, letter_id_wanted):
        def act(queue, message):
            letter = describe(queue, message)
            message.channel.basic_ack(message.delivery_tag)
            return letter

        return self._take(letter_id_wanted, act)

    def retry(self, letter_id_wanted):
        def act(queue, message):
            letter = describe(queue, message)
            self._check(message, letter)
            with Connection(self.amqp_uri) as connection:
                producer = connection.Producer()
                # user_id: RabbitMQ checks it is this connection's user, a relay the consumer accepts.
                producer.publish(message.body, exchange=EXCHANGE, routing_key=letter["routing_key"],
                                 content_type="application/json", content_encoding="binary", delivery_mode=2,
                                 user_id=connection.userid, retry=False)
            message.channel.basic_ack(message.delivery_tag)  # after the publish: a crash between the two leaves a copy here, never none
            return letter

        return self._take(letter_id_wanted, act)

    def _check(self, message, letter):
        """The consumer's checks, with the letter's first sender in place of ours (the control plane's own
        user relayed heartbeats and pulled statistics: it is a sender the consumer accepts)."""
        own = Connection(self.amqp_uri)
        senders = Senders(own.virtual_host, [own.userid])
        try:
            parsed = parse(message.body, self.clock())
            senders.check(parsed, letter["routing_key"], letter["sender"])
        except MalformedMessage as exc:
            raise WouldBeRefusedAgain(f"the consumer would refuse it again: {exc}",
                                      {"reason": [str(exc)]}) from None
