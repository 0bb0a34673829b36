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

``AgentTokenCopy`` fills the cache with every working agent token before any agent asks: once the feed
consumes, it reads them all from inventory (digest and server, 5,000 per call) and loads them as
verified now, and again every half of ``agent_ttl_seconds``, so that no heartbeat waits on
``authenticate``, not even an agent's first. What it loads follows the same rules: trusted long only
while the feed consumes, and a load that a revocation overtook is not kept (it tries again at once).
"""
import logging
import os
import threading
import time
import uuid

from kombu import Connection, Consumer, Queue, binding

from shared.authz import agent_principal, is_agent
from shared.events import load_event
from shared.publisher import event_exchange
from shared.queues import consume

log = logging.getLogger("gateway.auth_cache")

REVOKED = "tokens_revoked"  # the event (shared/events.py) and so the routing key on inventory.events
RESTORED = "backup_restored"  # on backup.events: with live, the database behind every cached token was replaced


class PrincipalCache:
    """Verified tokens (digest -> principal), as the module says. ``max_entries`` holds a whole fleet's
    agents, else it empties whenever full. ``feed`` (a RevocationFeed) is started by the first ``ticket``
    of each process; without one no entry is trusted longer than ``ttl_seconds``."""

    def __init__(self, ttl_seconds, max_entries=250_000, clock=time.monotonic, agent_ttl_seconds=None, feed=None,
                 agent_copy=None):
        self.ttl = ttl_seconds
        self.agent_ttl = ttl_seconds if agent_ttl_seconds is None else agent_ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self.feed = feed
        self.agent_copy = agent_copy  # an AgentTokenCopy, started with the feed when agents are trusted long
        self._used = set()  # servers whose agents were let in from here since take_used
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

    @property
    def epoch(self):
        """Changes whenever the feed starts or stops consuming."""
        return self._epoch

    def ticket(self):
        """Taken before asking inventory, handed to ``put`` (or ``load_agents``) with its answer."""
        if self.feed is not None and self.enabled:
            self.feed.ensure_started(self)
            if self.agent_copy is not None and self.agent_ttl > self.ttl:
                self.agent_copy.ensure_started(self)
        return self._epoch, self._revocations

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, verified_at, epoch = entry
        ttl = self.agent_ttl if epoch is not None and epoch == self._epoch else self.ttl
        if verified_at + ttl <= self.clock():
            return None
        if is_agent(principal):
            self._used.add(principal["server_id"])
        return principal

    def take_used(self):
        """The servers whose agents were let in from the cache since the last call."""
        used, self._used = self._used, set()
        return used

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

    def load_agents(self, tokens, ticket):
        """Every working agent token as inventory listed it after ``ticket`` was taken, [(digest, server id)]:
        each kept as verified now, and the agent entries not among them dropped (their tokens are gone). Loads
        nothing and answers False when a revocation came meanwhile, the feed does not consume (or lost its
        connection since), or they would not fit."""
        with self._lock:
            epoch, revocations = ticket
            if revocations != self._revocations or not self._listening or epoch != self._epoch:
                return False
            entries = {key: entry for key, entry in self._entries.items() if not is_agent(entry[0])}
            if len(entries) + len(tokens) > self.max_entries:
                log.warning("%d agent tokens do not fit in the cache's %d entries: agents are verified one by one",
                            len(tokens), self.max_entries)
                return False
            now = self.clock()
            entries.update((digest, (agent_principal(server_id), now, self._epoch)) for digest, server_id in tokens)
            self._entries = entries
            return True

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


class _ThreadPerProcess:
    """A daemon thread (``_run(cache)``) started on first use in each process: gunicorn forks its workers
    after the app is made, and each must run its own. ``stop`` ends it within a tick (a process that ends
    takes it along anyway)."""

    thread_name = None

    def __init__(self):
        self._pid = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self):
        self._stopping.set()

    def ensure_started(self, cache):
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._starting(cache)
                threading.Thread(target=self._run, args=(cache,), name=self.thread_name, daemon=True).start()
                self._pid = os.getpid()

    def _starting(self, cache):
        """What this process starts from, before its thread runs."""

    def _run(self, cache):
        raise NotImplementedError


class RevocationFeed(_ThreadPerProcess):
    """One consumer of ``tokens_revoked`` per gateway process, in a thread of its own started on first use
    (again after a fork), on an exclusive auto-delete queue of its own bound to ``inventory.events``: every
    process hears every revocation, and a process that is gone leaves no queue behind. It tells its cache
    when it starts and stops consuming; its connection's heartbeat (``heartbeat`` s) notices a silent
    network within about twice that."""

    thread_name = "revocations"

    def __init__(self, settings, reconnect_seconds=1.0, heartbeat=10):
        super().__init__()
        self.amqp_uri = settings.amqp_uri
        self.exchange = event_exchange(settings, "inventory")  # as inventory's relay declares it
        self.backup_exchange = event_exchange(settings, "backup")
        self.reconnect_seconds = reconnect_seconds
        self.heartbeat = heartbeat
        self.feed_id = uuid.uuid4().hex[:8]
        self.connection_name = None
        self.consuming = False  # in this process, now

    def _starting(self, cache):
        self.consuming = False
        cache.feed_lost()  # what a parent process heard is not this one's
        # Named per process and per feed, so the broker's connection list tells them apart.
        self.connection_name = f"steward gateway revocations (pid {os.getpid()}, feed {self.feed_id})"

    def _queue(self):
        return Queue(f"gateway.revocations-{os.getpid()}-{self.feed_id}", exclusive=True, auto_delete=True,
                     durable=False, bindings=[binding(self.exchange, routing_key=REVOKED),
                                              binding(self.backup_exchange, routing_key=RESTORED)])

    def _run(self, cache):
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
                        consume(conn, self._stopping)
            except Exception as exc:  # the broker or the connection went away: trust less, connect again
                self.consuming = False
                cache.feed_lost()
                log.warning("revocation feed lost its connection; cached agent tokens are trusted %g s until it "
                            "is back", cache.ttl, extra={"error": repr(exc)[:300]})
                time.sleep(self.reconnect_seconds)
        self.consuming = False
        cache.feed_lost()


class AgentTokenCopy(_ThreadPerProcess):
    """The cache's copy of every working agent token, one thread per gateway process (module docstring).
    Every ``report_seconds`` it also tells inventory whose agents the cache let in (``agent_tokens_used``),
    which keeps each agent token's ``last_used_at``, the server's "agent last seen", as asking did."""

    thread_name = "agent-tokens"

    def __init__(self, inventory, refresh_seconds, report_seconds=60.0, tick_seconds=1.0):
        super().__init__()
        self.inventory = inventory  # the gateway's RPC proxy of inventory
        self.refresh_seconds = refresh_seconds
        self.report_seconds = report_seconds
        self.tick_seconds = tick_seconds
        self.loads = 0  # loads kept, in this process

    def _run(self, cache):
        loaded = (None, 0.0)  # (the feed's epoch, monotonic time) of the last load kept
        reported_at = time.monotonic()
        while not self._stopping.wait(self.tick_seconds):
            try:
                now = time.monotonic()
                if cache.listening and (loaded[0] != cache.epoch or now - loaded[1] >= self.refresh_seconds):
                    epoch = cache.epoch
                    if self.load(cache):
                        loaded = (epoch, now)
                if now - reported_at >= self.report_seconds:
                    reported_at = now
                    used = cache.take_used()
                    if used:
                        self.inventory.agent_tokens_used(sorted(used))
            except Exception as exc:  # inventory away: what was loaded ages out, and agents are asked about again
                log.warning("agent tokens not loaded or reported", extra={"error": repr(exc)[:300]})
                self._stopping.wait(5 * self.tick_seconds)

    def load(self, cache):
        """Read every working agent token from inventory and load them: whether the load was kept."""
        ticket = cache.ticket()
        tokens, after = [], 0
        while True:
            page = self.inventory.agent_tokens(after)
            if not page:
                break
            tokens.extend((digest, server_id) for _, digest, server_id in page)
            after = page[-1][0]
        kept = cache.load_agents(tokens, ticket)
        if kept:
            self.loads += 1
            log.info("loaded %d agent tokens", len(tokens))
        return kept
