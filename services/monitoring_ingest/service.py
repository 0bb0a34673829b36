"""monitoring-ingest's RPC entrypoints, timers and event handlers (thin: domain code does the work).

Agent traffic itself is consumed by ``python -m services.monitoring_ingest.consumer``
(batches, not a nameko worker per message); this service answers questions
about what was stored, marks silent servers down, rolls hourly aggregates up,
runs retention and polls pull-mode agents.
"""
import time
from datetime import datetime, timedelta, timezone

from kombu import Connection, Exchange
from nameko.dependency_providers import Config
from nameko.events import event_handler
from nameko.messaging import Publisher
from nameko.timer import timer
from services.monitoring_ingest import dead_letters, known_servers, liveness, poller, retention, rollup, statistics
from services.monitoring_ingest.models import Base, processed_events
from shared.authz import require_role
from shared.crypto import AGENT_TOKEN
from shared.db import ping
from shared.outbox import first_delivery
from shared.dependencies import DatabaseSession, Events, RequestContext, RpcProxy, Secrets, rpc
from shared.errors import ValidationFailed
from shared.schemas import load_or_raise
from shared.schemas import monitoring as schemas
from shared.schemas.agent import EXCHANGE, PULL_PORT

TICK_SECONDS = 1
ROLLUP_SECONDS = 60


def utcnow():
    return datetime.now(timezone.utc)


def _parse_now(now):
    return datetime.fromisoformat(now) if now else utcnow()


class MonitoringIngestService:
    name = "monitoring_ingest"

    db = DatabaseSession(Base)
    secrets = Secrets()
    events = Events()
    request_id = RequestContext()
    config = Config()
    inventory = RpcProxy("inventory")
    agent_exchange = Publisher(exchange=Exchange(EXCHANGE, type="topic", durable=True))

    _last_retention = 0.0  # process-local pacing only; the advisory lock makes a run exclusive

    def _options(self):
        return self.config.get("monitoring_ingest") or {}

    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db)}

    # -- the fleet list and liveness ------------------------------------------
    @rpc
    def fleet_status(self, server_ids):
        """For the gateway's server list, one call per page: servers that ever sent a heartbeat, by id as a string."""
        status = liveness.fleet_status(self.db, [int(i) for i in server_ids], utcnow())
        return {str(server_id): row for server_id, row in status.items()}

    @rpc
    def server_liveness(self, principal, server_id, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.HeartbeatQuery(), query, "query")
        row = liveness.server_status(self.db, server_id, utcnow())
        row["heartbeats"] = statistics.latest_heartbeats(self.db, server_id, query["limit"])
        return schemas.ServerLiveness().dump(row)

    @timer(interval=TICK_SECONDS)
    def sweep_liveness(self):
        down_after = liveness.DOWN_AFTER
        if "down_after_seconds" in self._options():
            down_after = timedelta(seconds=float(self._options()["down_after_seconds"]))
        interval = liveness.HEARTBEAT_INTERVAL
        if "heartbeat_interval_seconds" in self._options():
            interval = timedelta(seconds=float(self._options()["heartbeat_interval_seconds"]))
        for name, payload in liveness.sweep(self.db, utcnow(), down_after, interval):
            self.events.emit(name, **payload)
        self.db.commit()

    # -- statistics ----------------------------------------------------------
    @rpc
    def system_series(self, principal, server_id, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.TimeRange(), query, "query")
        return schemas.SystemSeries().dump(statistics.system_series(self.db, server_id, query))

    @rpc
    def dns_series(self, principal, server_id, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.TimeRange(), query, "query")
        return schemas.DnsSeries().dump(statistics.dns_series(self.db, server_id, query))

    @rpc
    def record_rps(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.RecordRpsQuery(), query, "query")
        return schemas.RecordRps().dump(statistics.record_rps(self.db, query))

    @rpc
    def record_last_access(self, principal, server_id, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.LastAccessQuery(), query, "query")
        return schemas.LastAccessList().dump(statistics.last_access(self.db, server_id, query))

    @rpc
    def record_hits(self, principal, server_id, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.RecordHitsQuery(), query, "query")
        return schemas.RecordHitsPage().dump(statistics.record_hits(self.db, server_id, query))

    # -- dead letters: what the consumer refused ----------------------------------
    def _dead_letters(self):
        return dead_letters.DeadLetters(self.config["AMQP_URI"])

    @rpc
    def list_dead_letters(self, principal, query):
        require_role(principal, "admin")
        query = load_or_raise(schemas.DeadLetterQuery(), query, "query")
        items, total = self._dead_letters().list(query.get("queue"), query["limit"])
        return schemas.DeadLetterList().dump({"items": items, "total": total})

    @rpc
    def get_dead_letter(self, principal, letter_id):
        require_role(principal, "admin")
        return schemas.DeadLetterDetail().dump(self._dead_letters().show(letter_id))

    @rpc
    def retry_dead_letter(self, principal, letter_id):
        """Back to the agent exchange (WouldBeRefusedAgain, a 409, if the consumer would refuse it again)."""
        require_role(principal, "admin")
        return schemas.DeadLetter().dump(self._dead_letters().retry(letter_id))

    @rpc
    def drop_dead_letter(self, principal, letter_id):
        require_role(principal, "admin")
        return schemas.DeadLetter().dump(self._dead_letters().drop(letter_id))

    # -- retention -----------------------------------------------------------
    @rpc
    def set_retention_override(self, principal, server_id, data):
        require_role(principal, "admin")
        data = load_or_raise(schemas.RetentionOverride(), data, "retention")
        self.inventory.get_server(principal, server_id)  # a server inventory does not know: ServerNotFound, a 404
        values = retention.set_override(self.db, server_id, **data)
        self.db.commit()
        return schemas.RetentionOverride().dump(values)

    @rpc
    def run_retention(self, now=None):
        """One retention pass now (``now`` may be injected, ISO 8601); None if another replica is on it."""
        monitoring = self.inventory.effective_settings()["monitoring"]  # ServiceUnavailable if inventory does not answer
        self.db.rollback()  # the pass runs on its own connection and transaction
        return retention.run(self.db.get_bind(), _parse_now(now), monitoring["raw_retention_minutes"],
                             monitoring["aggregated_retention_days"])

    @timer(interval=TICK_SECONDS)
    def retention_tick(self):
        every = float(self._options().get("retention_interval_seconds", 300))
        if every <= 0:  # off: retention runs only when asked (tests inject their own clock)
            return
        if time.monotonic() - MonitoringIngestService._last_retention < every:
            return
        MonitoringIngestService._last_retention = time.monotonic()
        self.run_retention()

    @timer(interval=ROLLUP_SECONDS)
    def rollup_tick(self):
        """Hourly aggregates for the hours that closed, and again for hours that got late data."""
        self.db.rollback()  # the rollup runs on its own connection
        rollup.run(self.db.get_bind())

    # -- pull mode -----------------------------------------------------------
    @rpc
    def set_pull_target(self, server_id, address, agent_token_sealed, interval_seconds=60, port=PULL_PORT):
        """For the provisioner, when it issues a pull-mode server's bundle: the agent token comes sealed for the
        broker (shared.crypto's AGENT_TOKEN, as inventory issued it) and is sealed with SECRET_KEY at rest."""
        try:
            agent_token = self.secrets.open_sealed(AGENT_TOKEN, agent_token_sealed)
        except ValueError:
            raise ValidationFailed("the agent token is not sealed for the broker with this deployment's SECRET_KEY",
                                   {"agent_token_sealed": ["cannot be opened"]}) from None
        target = poller.set_target(self.db, self.secrets, server_id, address, agent_token, interval_seconds, port)
        self.db.commit()
        return target

    @rpc
    def remove_pull_target(self, server_id):
        poller.remove_target(self.db, server_id)
        self.db.commit()

    @timer(interval=TICK_SECONDS)
    def poll_agents(self):
        def publish(item, routing_key):
            # user_id: the control plane relays it (RabbitMQ checks that it is this connection's user).
            self.agent_exchange(item, routing_key=routing_key, delivery_mode=2,
                                user_id=Connection(self.config["AMQP_URI"]).userid)

        poller.Poller(self.db, self.secrets, publish).poll_due(utcnow())
        self.db.commit()

    # -- what inventory tells us -----------------------------------------------
    @event_handler("inventory", "server_created")
    def handle_server_created(self, payload):
        self._remember("server_created", payload)

    @event_handler("inventory", "server_updated")
    def handle_server_updated(self, payload):
        self._remember("server_updated", payload)

    def _remember(self, name, payload):
        if first_delivery(self.db, processed_events, name, payload):
            server = payload["server"]
            known_servers.remember(self.db, server)
            poller.readdress_target(self.db, server["id"], server["address"])  # a pull-mode server that moved
        self.db.commit()

    @event_handler("inventory", "server_deleted")
    def handle_server_deleted(self, payload):
        if first_delivery(self.db, processed_events, "server_deleted", payload):
            known_servers.forget(self.db, payload["server"]["id"])
            poller.remove_target(self.db, payload["server"]["id"])
        self.db.commit()
