"""monitoring-ingest's RPC entrypoints, timers and event handlers (thin: domain code does the work).

Agent traffic itself is consumed by ``python -m services.monitoring_ingest.consumer``
(batches, not a nameko worker per message); this service answers questions
about what was stored, marks silent servers down, rolls hourly aggregates up,
runs retention and polls pull-mode agents.
"""
import time
from datetime import datetime, timedelta, timezone

import eventlet
from kombu import Exchange
from nameko.dependency_providers import Config
from nameko.events import event_handler
from nameko.messaging import Publisher
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert

from services.monitoring_ingest import liveness, retention, rollup, statistics
from services.monitoring_ingest.models import (
    Base, DiskAlert, DnsRecordLastAccess, KnownServer, Liveness, PullTarget, RetentionOverride,
)
from services.monitoring_ingest.poller import Poller
from shared.authz import require_role
from shared.dependencies import DatabaseSession, Events, RequestContext, Secrets, rpc
from shared.errors import ServiceUnavailable
from shared.schemas import load_or_raise
from shared.schemas import monitoring as schemas
from shared.schemas.agent import EXCHANGE, PULL_PORT

TICK_SECONDS = 1
ROLLUP_SECONDS = 60
INVENTORY_TIMEOUT_SECONDS = 10


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
        self.db.execute(text("SELECT 1"))
        return {"service": self.name, "database": "ok"}

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
        changes = liveness.sweep(self.db, utcnow(), down_after)
        self.db.commit()
        for payload in changes:
            self.events.emit("server_state_changed", **payload)

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

    # -- retention -----------------------------------------------------------
    @rpc
    def set_retention_override(self, principal, server_id, data):
        require_role(principal, "admin")
        data = load_or_raise(schemas.RetentionOverride(), data, "retention")
        values = {"server_id": server_id, "raw_retention_minutes": data.get("raw_retention_minutes"),
                  "aggregated_retention_days": data.get("aggregated_retention_days")}
        self.db.execute(insert(RetentionOverride).values(**values).on_conflict_do_update(
            index_elements=["server_id"], set_={k: v for k, v in values.items() if k != "server_id"}))
        self.db.commit()
        return schemas.RetentionOverride().dump(values)

    @rpc
    def run_retention(self, now=None):
        """One retention pass now (``now`` may be injected, ISO 8601); None if another replica is on it."""
        try:
            # nameko's RPC proxy waits for ever; an inventory that does not answer must not hang the worker.
            with eventlet.Timeout(INVENTORY_TIMEOUT_SECONDS):
                monitoring = self.inventory.effective_settings()["monitoring"]
        except eventlet.Timeout:
            raise ServiceUnavailable("inventory did not answer; retention skipped", {"service": ["inventory"]}) from None
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
    def set_pull_target(self, server_id, address, agent_token, interval_seconds=60, port=PULL_PORT):
        """For the provisioner, when it sets a server up in pull mode; the token is sealed at rest."""
        values = {"address": address, "port": int(port), "token_sealed": self.secrets.seal(agent_token),
                  "interval_seconds": max(1, int(interval_seconds))}
        self.db.execute(insert(PullTarget).values(server_id=server_id, **values).on_conflict_do_update(
            index_elements=["server_id"], set_=values))
        self.db.commit()
        return {"server_id": server_id, "address": address, "port": int(port), "interval_seconds": values["interval_seconds"]}

    @rpc
    def remove_pull_target(self, server_id):
        self.db.execute(delete(PullTarget).where(PullTarget.server_id == server_id))
        self.db.commit()

    @timer(interval=TICK_SECONDS)
    def poll_agents(self):
        def publish(item, routing_key):
            self.agent_exchange(item, routing_key=routing_key, delivery_mode=2)

        Poller(self.db, self.secrets, publish).poll_due(utcnow())
        self.db.commit()

    # -- what inventory tells us -----------------------------------------------
    @event_handler("inventory", "server_created")
    def handle_server_created(self, payload):
        self._remember(payload["server"])

    @event_handler("inventory", "server_updated")
    def handle_server_updated(self, payload):
        self._remember(payload["server"])

    def _remember(self, server):
        self.db.execute(insert(KnownServer).values(id=server["id"], name=server["name"]).on_conflict_do_update(
            index_elements=["id"], set_={"name": server["name"]}))
        self.db.commit()

    @event_handler("inventory", "server_deleted")
    def handle_server_deleted(self, payload):
        server_id = payload["server"]["id"]
        # Time-partitioned rows age out with their partitions; the per-server rows go now.
        for model, column in ((Liveness, Liveness.server_id), (DiskAlert, DiskAlert.server_id),
                              (PullTarget, PullTarget.server_id), (RetentionOverride, RetentionOverride.server_id),
                              (DnsRecordLastAccess, DnsRecordLastAccess.server_id), (KnownServer, KnownServer.id)):
            self.db.execute(delete(model).where(column == server_id))
        self.db.commit()
