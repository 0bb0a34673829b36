"""The gateway's token cache, and the feed of revocations that lets it keep agent tokens long.

``PrincipalCache`` keeps what inventory answered for a token (by the token's digest) so that most
requests need no ``authenticate`` round trip: a person's token for ``ttl_seconds`` (10 s), an
agent's for ``agent_ttl_seconds`` (300 s: it comes back every 30 s, and asking inventory on every
heartbeat was the fleet's largest cost, docs/decisions.md). A token revoked meanwhile must not
keep working that long: inventory emits ``tokens_revoked`` in the transaction that revokes
(server deleted, bundle re-issued, token deleted, user deleted or changed, password changed,
signed out), and ``RevocationFeed`` (one per gateway process) drops the matching entries as it
arrives. A live restore (backup's ``backup_restored`` with ``live``) drops every entry: tokens made after
the backup are gone from the database, and no revocation names them.

An agent entry is trusted its long time only while the feed could have told it otherwise: it is
made while the feed consumes, and the feed has not lost its connection since. An entry made before
the feed consumed, while it was away, or that outlived a lost connection, is trusted only the short
time (``ttl_seconds``), since a revocation may have been missed then (docs/decisions.md). An answer
of inventory that a revocation overtook on its way is not cached at all (``ticket``).
"""
import logging
import os
import socket
import threading
import time
import uuid

from kombu import Connection, Consumer, Queue, binding

from shared.authz import is_agent
from shared.events import load_event
from shared.publisher import event_exchange

log = logging.getLogger("gateway.auth_cache")

REVOKED = "tokens_revoked"  # the event (shared/events.py) and so the routing key on inventory.events
RESTORED = "backup_restored"  # on backup.events: with live, the database behind every cached token was replaced


class PrincipalCache:
    """Verified tokens (digest -> principal), as the module says. ``max_entries`` holds a whole fleet's
    agents, else it empties whenever full. ``feed`` (a RevocationFeed) is started by the first ``ticket``
    of each process; without one no entry is trusted longer than ``ttl_seconds``."""

    def __init__(self, ttl_seconds, max_entries=250_000, clock=time.monotonic, agent_ttl_seconds=None, feed=None):
        self.ttl = ttl_seconds
        self.agent_ttl = ttl_seconds if agent_ttl_seconds is None else agent_ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self.feed = feed
        self._entries = {}  # digest -> (principal, verified at, the feed's epoch if trusted long, else None)
        self._lock = threading.Lock()
        self._epoch = 0  # changes whenever the feed starts or stops consuming
        self._listening = False
        self._revocations = 0  # revocations heard: an answer asked before one is not cached

    @property
    def enabled(self):
        return self.ttl > 0 or self.agent_ttl > 0

    @property
    def listening(self):
        """Whether this process's feed consumes revocations now."""
        return self._listening

    def ticket(self):
        """Taken before asking inventory, handed to ``put`` with its answer."""
        if self.feed is not None and self.enabled:
            self.feed.ensure_started(self)
        return self._epoch, self._revocations

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, verified_at, epoch = entry
        ttl = self.agent_ttl if epoch is not None and epoch == self._epoch else self.ttl
        return principal if verified_at + ttl > self.clock() else None

    def put(self, key, principal, ticket):
        with self._lock:
            epoch, revocations = ticket
            if revocations != self._revocations:
                return  # a revocation arrived while inventory was asked: its answer may be the revoked token's
            long = self._listening and epoch == self._epoch and is_agent(principal) and self.agent_ttl > self.ttl
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if self._alive(v, now)}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (principal, self.clock(), self._epoch if long else None)

    def _alive(self, entry, now):
        _, verified_at, epoch = entry
        return verified_at + (self.agent_ttl if epoch is not None and epoch == self._epoch else self.ttl) > now

    def revoke(self, user_ids=(), server_ids=(), everyone=False):
        """Drop the entries of these users' tokens and these servers' agent tokens (``everyone``: all);
        returns how many went. A scan (about 20 ms for 100,000 entries): revocations are rare, and an index
        would cost memory for every entry."""
        users, servers = set(user_ids), set(server_ids)
        with self._lock:
            self._revocations += 1
            gone = [key for key, (principal, _, _) in self._entries.items() if everyone or (
                principal.get("server_id") in servers if is_agent(principal) else principal.get("user_id") in users)]
            for key in gone:
                del self._entries[key]
        return len(gone)

    def feed_consuming(self):
        """The feed consumes now: entries verified from here on may be trusted long."""
        with self._lock:
            self._epoch += 1
            self._listening = True

    def feed_lost(self):
        """The feed stopped consuming (or never did in this process): revocations may go unheard, so every
        entry is trusted only the short time from now on."""
        with self._lock:
            self._epoch += 1
            self._listening = False


class RevocationFeed:
    """One consumer of ``tokens_revoked`` per gateway process, in a thread of its own started on first use
    (again after a fork), on an exclusive auto-delete queue of its own bound to ``inventory.events``: every
    process hears every revocation, and a process that is gone leaves no queue behind. It tells its cache
    when it starts and stops consuming; its connection's heartbeat (``heartbeat`` s) notices a silent
    network within about twice that."""

    def __init__(self, settings, reconnect_seconds=1.0, heartbeat=10):
        self.amqp_uri = settings.amqp_uri
        self.exchange = event_exchange(settings, "inventory")  # as inventory's relay declares it
        self.backup_exchange = event_exchange(settings, "backup")
        self.reconnect_seconds = reconnect_seconds
        self.heartbeat = heartbeat
        self.feed_id = uuid.uuid4().hex[:8]
        self.connection_name = None
        self.consuming = False  # in this process, now
        self._pid = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self):
        """Ends this process's feed within a second (a process that ends takes it along anyway)."""
        self._stopping.set()

    def ensure_started(self, cache):
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # gunicorn forks workers: each listens for itself
                self.consuming = False
                cache.feed_lost()  # what a parent process heard is not this one's
                # Named per process and per feed, so the broker's connection list tells them apart.
                self.connection_name = f"steward gateway revocations (pid {os.getpid()}, feed {self.feed_id})"
                threading.Thread(target=self._listen_forever, args=(cache,), name="revocations", daemon=True).start()
                self._pid = os.getpid()

    def _queue(self):
        return Queue(f"gateway.revocations-{os.getpid()}-{self.feed_id}", exclusive=True, auto_delete=True,
                     durable=False, bindings=[binding(self.exchange, routing_key=REVOKED),
                                              binding(self.backup_exchange, routing_key=RESTORED)])

    def _listen_forever(self, cache):
        def on_message(body, message):
            if message.delivery_info.get("routing_key") == RESTORED:
                if isinstance(body, dict) and body.get("live") and body.get("state") == "succeeded":
                    log.info("the database was restored from a backup: dropped all %d cached tokens",
                             cache.revoke(everyone=True), extra={"event_id": body.get("id")})
                return
            try:
                event = load_event(REVOKED, body)
            except Exception as exc:  # whose tokens it meant is unknown (a newer inventory?): forget everyone's
                dropped = cache.revoke(everyone=True)
                log.warning("a %s event this gateway cannot read: dropped all %d cached tokens", REVOKED, dropped,
                            extra={"error": repr(exc)[:300]})
                return
            dropped = cache.revoke(event["user_ids"], event["server_ids"])
            log.info("tokens revoked (%s): dropped %d cached", event["reason"], dropped,
                     extra={"event_id": event.get("id"), "user_ids": event["user_ids"],
                            "server_ids": event["server_ids"]})

        while not self._stopping.is_set():
            try:
                with Connection(self.amqp_uri, heartbeat=self.heartbeat, connect_timeout=5, transport_options={
                        "client_properties": {"connection_name": self.connection_name}}) as conn:
                    conn.connect()
                    # Declared, bound and consuming before the cache is told: nothing from then on is missed.
                    with Consumer(conn, queues=[self._queue()], callbacks=[on_message], no_ack=True, accept=["json"]):
                        cache.feed_consuming()
                        self.consuming = True
                        while not self._stopping.is_set():
                            try:
                                conn.drain_events(timeout=1)
                            except socket.timeout:
                                conn.heartbeat_check()
            except Exception as exc:  # the broker or the connection went away: trust less, connect again
                self.consuming = False
                cache.feed_lost()
                log.warning("revocation feed lost its connection; cached agent tokens are trusted %g s until it "
                            "is back", cache.ttl, extra={"error": repr(exc)[:300]})
                time.sleep(self.reconnect_seconds)
        self.consuming = False
        cache.feed_lost()
