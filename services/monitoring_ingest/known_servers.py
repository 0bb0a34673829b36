"""What inventory tells monitoring-ingest about servers: their names (for events and pages),
and that one is gone (its per-server rows go; time-partitioned rows age out with their partitions)."""
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from services.monitoring_ingest.models import (
    DiskAlert, DnsRecordLastAccess, KnownServer, Liveness, PullTarget, RetentionOverride,
)

# Every table that holds rows of one server, and its server column.
PER_SERVER = ((Liveness, Liveness.server_id), (DiskAlert, DiskAlert.server_id), (PullTarget, PullTarget.server_id),
              (RetentionOverride, RetentionOverride.server_id), (DnsRecordLastAccess, DnsRecordLastAccess.server_id),
              (KnownServer, KnownServer.id))


def remember(connection, server):
    """A server was created or changed: keep its name."""
    connection.execute(insert(KnownServer).values(id=server["id"], name=server["name"]).on_conflict_do_update(
        index_elements=["id"], set_={"name": server["name"]}))


def forget(connection, server_id):
    """A server was deleted: its per-server rows go now."""
    for model, column in PER_SERVER:
        connection.execute(delete(model).where(column == server_id))
