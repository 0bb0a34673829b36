"""Backup servers: managed servers with the backup component, enrolled with their daemon.

Enrolling creates the daemon's two users for this control plane with fresh passwords (sealed
here): ``append`` for every backup, verification and restore, ``prune`` for retention and
deletion only. The daemon's status (disk, crossings, last object check) is pulled as its heartbeat.
"""
import secrets

from sqlalchemy import func, select

from services.backup.engine import DaemonClient, Repository
from services.backup.models import Backup, BackupServer, RetentionPolicy
from services.backup.retention import RULES as POLICY_RULES
from shared.crypto import backup_enrollment_token
from shared.errors import BackupServerNotFound, Conflict, ValidationFailed

REPOSITORY = "steward"
APPEND_USER, PRUNE_USER = "steward", "steward-prune"
STATUS_TIMEOUT = 5  # seconds a status pull (the daemon's heartbeat) waits; the next pull is 30 s later


class BackupServers:
    def __init__(self, session_factory, box, secret_key, clock, client=DaemonClient, cache_dir=None, outbox=None):
        self.Session = session_factory
        # outbox(session) -> an EventEmitter writing into that transaction (None: events go nowhere, the bench)
        self.outbox = outbox
        self.box = box
        self.secret_key = secret_key
        self.clock = clock
        self.client = client
        self.cache_dir = cache_dir

    def register(self, server, data, session=None):
        """``server``: inventory's record of the managed server; ``data``: BackupServerCreate, loaded. With
        ``session`` the row joins that transaction (the caller commits); else it is committed at once."""
        if session is None:
            with self.Session() as own:
                created = self.register(server, data, own)
                own.commit()
                return created
        if "backup" not in [c["name"] for c in server["components"]]:
            raise ValidationFailed(f"{server['name']} does not have the backup component",
                                   {"server_id": ["needs the backup component (installed)"]})
        if session.scalar(select(BackupServer.id).where(BackupServer.server_id == server["id"])) is not None:
            raise Conflict(f"{server['name']} is a backup server already", {"server_id": ["already registered"]})
        host = f"[{server['address']}]" if ":" in server["address"] else server["address"]
        url = f"http://{host}:{data['port']}"
        append_password, prune_password = secrets.token_hex(24), secrets.token_hex(24)
        self.client(url).enroll(backup_enrollment_token(self.secret_key, server["id"]), [
            {"name": APPEND_USER, "role": "append", "password": append_password},
            {"name": PRUNE_USER, "role": "prune", "password": prune_password}])
        row = BackupServer(server_id=server["id"], name=server["name"], url=url, repository=REPOSITORY,
                           append_user=APPEND_USER, append_password_sealed=self.box.seal(append_password),
                           prune_user=PRUNE_USER, prune_password_sealed=self.box.seal(prune_password),
                           include_monitoring_raw=data["include_monitoring_raw"], created_at=self.clock())
        session.add(row)
        session.flush()
        return self.describe(session, row)

    def load(self, session, backup_server_id):
        row = session.get(BackupServer, backup_server_id)
        if row is None:
            raise BackupServerNotFound(f"no backup server with id {backup_server_id}")
        return row

    def get(self, backup_server_id):
        with self.Session() as session:
            return self.describe(session, self.load(session, backup_server_id))

    def list(self):
        with self.Session() as session:
            return [self.describe(session, row) for row in session.scalars(select(BackupServer).order_by(BackupServer.id))]

    def update(self, backup_server_id, data):
        with self.Session() as session:
            row = self.load(session, backup_server_id)
            for name, value in data.items():
                setattr(row, name, value)
            session.commit()
            return self.describe(session, row)

    def forget(self, backup_server_id):
        """Stop using it; what it stores stays on it."""
        with self.Session() as session:
            session.delete(self.load(session, backup_server_id))
            session.commit()

    def describe(self, session, row):
        stored = select(func.count(), func.max(Backup.taken_at)).where(Backup.backup_server_id == row.id)
        count, last_backup_at = session.execute(stored).one()
        verified = session.execute(select(Backup.verification, Backup.verified_at)
                                   .where(Backup.backup_server_id == row.id, Backup.verified_at.is_not(None))
                                   .order_by(Backup.verified_at.desc()).limit(1)).first()
        return {"id": row.id, "server_id": row.server_id, "name": row.name, "url": row.url, "repository": row.repository,
                "include_monitoring_raw": row.include_monitoring_raw,
                "disk": {"total_bytes": row.disk_total_bytes, "free_bytes": row.disk_free_bytes,
                         "free_percent": row.disk_free_percent, "low": row.disk_low},
                "last_seen_at": row.last_seen_at, "last_error": row.last_error, "last_backup_at": last_backup_at,
                "last_verification": verified[0] if verified else None,
                "last_verified_at": verified[1] if verified else None, "backups": count, "created_at": row.created_at}

    def policy(self, backup_server_id):
        with self.Session() as session:
            self.load(session, backup_server_id)
            policy = session.get(RetentionPolicy, backup_server_id)
            return {rule: getattr(policy, rule) if policy else 0 for rule in POLICY_RULES}

    def set_policy(self, backup_server_id, rules):
        with self.Session() as session:
            self.load(session, backup_server_id)
            policy = session.get(RetentionPolicy, backup_server_id) or RetentionPolicy(backup_server_id=backup_server_id)
            for rule in POLICY_RULES:
                setattr(policy, rule, rules[rule])
            policy.updated_at = self.clock()
            session.add(policy)
            session.commit()
        return self.policy(backup_server_id)

    # -- the daemon ------------------------------------------------------------------
    def daemon(self, row, timeout=30):
        return self.client(row.url, (row.append_user, self.box.open(row.append_password_sealed)), timeout=timeout)

    def repository(self, row, secret, role="append"):
        user, sealed = ((row.prune_user, row.prune_password_sealed) if role == "prune"
                        else (row.append_user, row.append_password_sealed))
        return Repository(row.url, row.repository, user, self.box.open(sealed), secret, self.cache_dir)

    def refresh(self, backup_server_id):
        """Pull the daemon's status (its heartbeat) into the row; returns it (or raises BackupServerFailed)."""
        with self.Session() as session:
            row = self.load(session, backup_server_id)
            try:
                status = self.daemon(row, timeout=STATUS_TIMEOUT).status()
            except Exception as exc:
                row.last_error = str(exc)
                session.commit()
                raise
            disk = status["disk"]
            row.disk_total_bytes, row.disk_free_bytes = disk["total_bytes"], disk["free_bytes"]
            row.disk_free_percent, row.disk_low = disk["free_percent"], disk["low"]
            row.last_seen_at, row.last_error = self.clock(), None
            self._report_crossings(session, row, disk, status.get("disk_events") or [])
            session.commit()
            return status

    def _report_crossings(self, session, row, disk, crossings):
        """backup_disk_low once for each of the daemon's crossings below its threshold not reported yet, in the
        transaction that records it seen (a recovery, then a new crossing, is a new one)."""
        new = sorted((c for c in crossings if c["id"] > row.disk_event_seen), key=lambda c: c["id"])
        if not new:
            return
        if self.outbox is not None:
            emitter = self.outbox(session)
            for crossing in new:
                if crossing["kind"] == "low":
                    emitter.emit("backup_disk_low", backup_server_id=row.id, backup_server_name=row.name,
                                 free_percent=crossing["free_percent"], free_bytes=disk["free_bytes"],
                                 low_percent=disk.get("low_percent"))
        row.disk_event_seen = new[-1]["id"]

