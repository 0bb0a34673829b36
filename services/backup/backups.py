"""Backups: run one, verify one, restore one, prune by the retention policy, delete one.

Each long operation reports through ``progress.step(name)`` (a context manager yielding
``say(text)``), which the task runner turns into the task's steps and log, and returns an
``Outcome``: what it changes in the catalogue, which the runner writes in the transaction that
ends the task and writes its event. A backup enters the catalogue only after restic committed
its snapshot and pg_dump ended whole, and only with its task's end, so a run cut half way (or
ended by another replica) lists nothing and the next run starts clean.
"""
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import make_url

from services.backup import dump, retention, reuse
from services.backup.exceptions import EngineFailed
from services.backup.models import Backup, BackupServer, Task, TaskStep
from shared.errors import BackupNotFound, BackupServerFailed, Conflict
from shared.migrations import upgrade

VERIFY_DATABASE_PREFIX = "steward_verify_"


@dataclass
class Outcome:
    """What a run made or found: ``write(session)`` puts it in the catalogue, in the transaction that ends its task
    (with its event), ``said`` is what its last step says of it, ``found`` the event's fields (backup_id, error)."""
    found: dict
    write: Callable | None = None
    said: str = ""


class Progress:
    """What a run reports to when no task runs it (a benchmark, a test): its steps' names; nothing cancels it.
    A task's (services/backup/dependencies.py: TaskProgress) writes the task's log and stops on a cancel."""

    def __init__(self):
        self.names = []

    @contextlib.contextmanager
    def step(self, name):
        self.names.append(name)
        yield lambda line: None

    def cancellable(self):
        """A stretch that a cancel may cut short where it is (child processes only: no database call inside)."""
        return contextlib.nullcontext()

    def across(self, swap):
        """``swap()`` puts another database in the place of this one; a task's own rows go along with it."""
        return swap()


def backup_dict(row, server_name):
    return {"id": row.id, "backup_server_id": row.backup_server_id, "backup_server_name": server_name,
            "snapshot_id": row.snapshot_id, "taken_at": row.taken_at, "schemas": row.schemas,
            "include_monitoring_raw": row.include_monitoring_raw, "size_bytes": row.size_bytes,
            "added_bytes": row.added_bytes, "duration_ms": row.duration_ms, "task_id": row.task_id,
            "verification": row.verification, "verified_at": row.verified_at,
            "verification_detail": row.verification_detail}


class Backups:
    def __init__(self, session_factory, servers, keyring, database_url, schemas, clock,
                 reuse_min_bytes=reuse.REUSE_MIN_BYTES):
        self.Session = session_factory
        self.servers = servers
        self.keyring = keyring
        self.database_url = database_url
        self.schemas = schemas  # every Steward schema, in one pg_dump (None: those the database holds)
        self.clock = clock
        self.reuse_min_bytes = reuse_min_bytes  # smaller tables are dumped every time (reuse.py)

    # -- the catalogue ---------------------------------------------------------------
    def _load(self, session, backup_id):
        row = session.get(Backup, backup_id)
        if row is None:
            raise BackupNotFound(f"no backup with id {backup_id}")
        return row

    def get(self, backup_id):
        with self.Session() as session:
            row = self._load(session, backup_id)
            return backup_dict(row, session.get(BackupServer, row.backup_server_id).name)

    def list(self, backup_server_id=None):
        with self.Session() as session:
            query = select(Backup, BackupServer.name).join(BackupServer).order_by(Backup.taken_at.desc())
            if backup_server_id is not None:
                query = query.where(Backup.backup_server_id == backup_server_id)
            return [backup_dict(row, name) for row, name in session.execute(query)]

    def latest(self, backup_server_id):
        with self.Session() as session:
            return session.scalar(select(Backup.id).where(Backup.backup_server_id == backup_server_id)
                                  .order_by(Backup.taken_at.desc()).limit(1))

    # -- one backup ------------------------------------------------------------------
    def record(self, outcome):
        """Write an Outcome in a transaction of its own (a run outside a task); returns the backup as listed."""
        with self.Session() as session:
            outcome.write(session)
            session.commit()
        return self.get(outcome.found["backup_id"])

    def run(self, backup_server_id, progress, taken_at=None):
        """A backup outside a task, listed at once (a benchmark, a test): ``back_up`` and ``record``."""
        return self.record(self.back_up(backup_server_id, progress, taken_at=taken_at))

    def back_up(self, backup_server_id, progress, task_id=None, taken_at=None):
        """Back up every Steward schema to the backup server; returns the Outcome that lists it (the task runner
        writes it with the task's end and backup_finished; or backup_failed)."""
        with self.Session() as session:
            server = self.servers.load(session, backup_server_id)
            name, include_raw = server.name, server.include_monitoring_raw
            # What this backup may take from (reuse.py); nothing from one that verification found bad.
            previous = session.execute(select(Backup.parts, Backup.verification).where(
                Backup.backup_server_id == backup_server_id).order_by(Backup.taken_at.desc()).limit(1)).first()
            previous = previous.parts if previous and previous.verification != "bad" else None
        with progress.step("key") as say:
            secret = self.keyring.secret()
            say("the backup key opens with the managed-backup password")
        with progress.step("check_server") as say:
            status = self.servers.refresh(backup_server_id)
            needed = self._room_needed(backup_server_id)
            free = status["disk"]["free_bytes"]
            say(f"{free} bytes free on the backup server; about {needed} needed")
            if free < needed:
                raise BackupServerFailed(f"the backup server {name} is too full: about {needed} bytes needed, "
                                         f"{free} free", {"free_bytes": free, "needed_bytes": needed})
        with progress.step("dump_and_store") as say:
            with self.Session() as session:
                server = self.servers.load(session, backup_server_id)
                repository = self.servers.repository(server, secret)
            if server.repository not in status["repositories"]:  # the first backup there makes it
                repository.init()
                say(f"created the repository {server.repository}")
            started = time.monotonic()
            taken_at = taken_at or self.clock()
            schemas = self.schemas or dump.steward_schemas(self.database_url)
            # A cancel kills pg_dump and restic where they are: restic commits no snapshot.
            summary = dump.back_up(repository, self.database_url, schemas, include_raw, taken_at, previous=previous,
                                   reuse_min_bytes=self.reuse_min_bytes, cancellable=progress.cancellable)
            duration_ms = int((time.monotonic() - started) * 1000)
            sources = reuse.reused(summary["parts"])
            say(f"snapshot {summary['snapshot_id'][:8]}: {summary['total_bytes_processed']} bytes dumped, "
                f"{summary['data_added']} added to the repository in {duration_ms} ms; "
                f"{sum(map(len, sources.values()))} unchanged tables taken from {len(sources)} earlier snapshots")
        row = Backup(id=uuid.uuid4().hex, backup_server_id=backup_server_id, snapshot_id=summary["snapshot_id"],
                     taken_at=taken_at, schemas=list(schemas), include_monitoring_raw=include_raw,
                     size_bytes=summary["total_bytes_processed"], added_bytes=summary["data_added"],
                     duration_ms=duration_ms, task_id=task_id, parts=summary["parts"])

        def record(session):
            self._still_stored(session, backup_server_id, sources)
            session.add(row)

        return Outcome({"backup_id": row.id}, record, f"listed as backup {row.id}")

    def _still_stored(self, session, backup_server_id, sources):
        """The earlier snapshots a backup reuses are still kept: a delete while it ran may have let them go. Holds
        the backup server's row lock, as _forget_snapshots does, to the end of the caller's transaction."""
        session.get(BackupServer, backup_server_id, with_for_update=True)
        kept = reuse.snapshots_in_use(session.execute(select(Backup.snapshot_id, Backup.parts).where(
            Backup.backup_server_id == backup_server_id)).all())
        gone = sorted(set(sources) - kept)
        if gone:
            raise EngineFailed(f"snapshots {', '.join(gone)}, whose tables this backup reuses, were deleted while it "
                               "ran; the next backup dumps those tables again")

    def _room_needed(self, backup_server_id):
        """What the next backup may add: the last one's dump size and the size of the tables it reused (an upper
        bound, before deduplication)."""
        with self.Session() as session:
            last = session.execute(select(Backup.size_bytes, Backup.parts).where(
                Backup.backup_server_id == backup_server_id).order_by(Backup.taken_at.desc()).limit(1)).first()
            if last is not None:
                return last.size_bytes + reuse.reused_bytes(last.parts)
            return session.scalar(text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = ANY(:schemas)"),
                {"schemas": list(self.schemas or dump.steward_schemas(self.database_url))})

    # -- verification ----------------------------------------------------------------
    def verify(self, backup_id, progress):
        """A verification outside a task, recorded at once: ``verification`` and ``record``."""
        return self.record(self.verification(backup_id, progress))

    def verification(self, backup_id, progress):
        """(1) the backup server re-hashes every stored object; (2) this control plane fetches the backup,
        decrypts it and restores it into a scratch database. Returns the Outcome that records the result (the
        task runner writes it with the task's end and backup_verified)."""
        with self.Session() as session:
            row = self._load(session, backup_id)
            server = self.servers.load(session, row.backup_server_id)
            snapshot_id, schemas, parts = row.snapshot_id, row.schemas, row.parts is not None
        problems, notes = [], []
        with progress.step("server_check") as say:
            checked = self.servers.daemon(server).check(server.repository)
            say(f"{checked['objects']} objects, {checked['bytes']} bytes re-hashed on the backup server")
            if checked["corrupt"]:
                problems.append(f"the backup server found {len(checked['corrupt'])} corrupt objects: "
                                + ", ".join(checked["corrupt"][:5]))
                say(problems[-1])
        with progress.step("restore_to_scratch") as say:
            scratch = VERIFY_DATABASE_PREFIX + backup_id[:16]
            try:
                notes.append(self._restore_into(server, snapshot_id, scratch, schemas, parts))
                say(notes[-1])
            except (EngineFailed, BackupServerFailed) as exc:
                problems.append(f"restore into a scratch database failed: {failure_reason(exc)}")
                say(problems[-1])
            finally:
                dump.drop_scratch(self.database_url, scratch)
        state = "bad" if problems else "ok"
        detail = "; ".join(problems or notes)

        def record(session):
            row = self._load(session, backup_id)
            row.verification, row.verified_at, row.verification_detail = state, self.clock(), detail

        return Outcome({"backup_id": backup_id, "error": detail if problems else None}, record,
                       f"backup {backup_id}: {state}")

    def _restore_into(self, server, snapshot_id, database, schemas, parts):
        dump.create_scratch(self.database_url, database)
        started = time.monotonic()
        dump.restore(self.servers.repository(server, self.keyring.secret()), snapshot_id, self.database_url, database,
                     parts)
        tables = dump.schema_tables(self.database_url, database, schemas)
        return (f"restored into {database} in {time.monotonic() - started:.1f} s: "
                + ", ".join(f"{schema} {count} tables" for schema, count in sorted(tables.items())))

    # -- restore -----------------------------------------------------------------------
    def restore(self, backup_id, into, progress):
        """Into a new database ``into`` (a scratch copy to inspect or to move to); the Outcome changes nothing."""
        with self.Session() as session:
            row = self._load(session, backup_id)
            server = self.servers.load(session, row.backup_server_id)
            snapshot_id, schemas, parts = row.snapshot_id, row.schemas, row.parts is not None
        with progress.step("restore") as say:
            say(self._restore_into(server, snapshot_id, into, schemas, parts))
        return Outcome({"backup_id": backup_id, "into": into})

    def restore_live(self, backup_id, progress):
        """The control plane back to the backup: restored into a scratch database while the live one serves,
        migrated to this code's head, its stale state settled, then swapped in by name (dump.swap: seconds of
        refused connections, which the services ride out). The database as it was stays, renamed and closed."""
        with self.Session() as session:
            row = self._load(session, backup_id)
            server = self.servers.load(session, row.backup_server_id)
            snapshot_id, schemas, parts = row.snapshot_id, row.schemas, row.parts is not None
        live = make_url(self.database_url).database
        scratch = f"{live[:46]}_restore_{backup_id[:8]}"
        replaced = f"{live[:39]}_replaced_{self.clock():%Y%m%d%H%M%S}"
        scratch_url = make_url(self.database_url).set(database=scratch).render_as_string(hide_password=False)
        try:
            with progress.step("restore") as say:
                say(self._restore_into(server, snapshot_id, scratch, schemas, parts))
            with progress.step("migrate") as say:
                before = dump.revisions(self.database_url, scratch)
                upgrade(scratch_url)
                moved = {s: (v, after) for s, after in dump.revisions(self.database_url, scratch).items()
                         if (v := before.get(s)) != after}
                say("migrated " + ", ".join(f"{s} {v} -> {a}" for s, (v, a) in sorted(moved.items()))
                    if moved else "the backup's schemas are at this code's revisions already")
                say(self._settle(scratch_url, backup_id))
            with progress.step("swap") as say:
                progress.across(lambda: dump.swap(self.database_url, scratch, replaced))
                say(f"{scratch} is now {live}; the database as it was is kept as {replaced}, connections off: "
                    f"inspect it (ALTER DATABASE {replaced} ALLOW_CONNECTIONS true) or DROP DATABASE {replaced}")
        finally:
            dump.drop_scratch(self.database_url, scratch)  # gone by its name once swapped in
        return Outcome({"backup_id": backup_id, "into": live, "live": True, "replaced": replaced})

    def _settle(self, scratch_url, backup_id):
        """What the restored database must not take from the past: its unsent events (sent since), its backup tasks
        at work when it was dumped (its own backup's among them: they take their end from the live database, or
        fail here, rather than be reaped with backup_failed), and a catalogue missing the backups stored since
        (prune would forget their snapshots as strays)."""
        sent = dump.settle(self.database_url, make_url(scratch_url).database)
        tasks, steps = Task.__table__, TaskStep.__table__
        engine = create_engine(scratch_url)
        try:
            with engine.begin() as connection:
                open_ids = connection.execute(select(tasks.c.id).where(tasks.c.state.in_(("queued", "running"))))
                open_ids = open_ids.scalars().all()
                with self.Session() as session:
                    catalogue = [dict(r) for r in session.execute(select(Backup.__table__)).mappings()]
                    ended = [dict(r) for r in session.execute(select(tasks).where(
                        tasks.c.id.in_(open_ids), tasks.c.state.not_in(("queued", "running")))).mappings()]
                    ended_steps = [dict(r) for r in session.execute(select(steps).where(
                        steps.c.task_id.in_([t["id"] for t in ended]))).mappings()]
                for task in ended:  # as the live database ended them
                    connection.execute(delete(steps).where(steps.c.task_id == task["id"]))
                    connection.execute(update(tasks).where(tasks.c.id == task["id"]).values(task))
                if ended_steps:
                    connection.execute(insert(steps).values(ended_steps))
                failed = connection.execute(update(tasks).where(tasks.c.state.in_(("queued", "running"))).values(
                    state="failed", finished_at=self.clock(),
                    error=f"ended by the live restore of backup {backup_id}: it was at work when that backup was taken"
                )).rowcount
                servers = set(connection.execute(select(BackupServer.id)).scalars())
                kept = [r for r in catalogue if r["backup_server_id"] in servers]
                added = connection.execute(insert(Backup.__table__).values(kept).on_conflict_do_nothing()
                                           .returning(Backup.id)).all() if kept else []
        finally:
            engine.dispose()
        return (f"{sent} events the backup had not sent marked sent; of the backup tasks it held at work, "
                f"{len(ended)} ended as they did since, {failed} failed; {len(added)} backups stored since it listed "
                "again")

    # -- retention ---------------------------------------------------------------------
    def plan(self, backup_server_id):
        policy = self.servers.policy(backup_server_id)
        return retention.apply(policy, self.list(backup_server_id))

    def prune(self, backup_server_id, dry_run=True):
        """What the retention policy removes (dry run)."""
        decision = self.plan(backup_server_id)
        return {"backup_server_id": backup_server_id, "dry_run": dry_run,
                "keep": [dict(b, reasons=reasons) for b, reasons in decision.keep],
                "remove": [dict(b, reasons=[]) for b in decision.remove]}

    def pruned(self, backup_server_id, progress):
        """Remove what the retention policy removes: restic forget + prune as the daemon's prune user, with the
        snapshots no backup lists; the Outcome unlists those backups (with the task's end and backup_pruned)."""
        with progress.step("prune") as say:
            result = self.prune(backup_server_id, dry_run=False)
            removed = [b["id"] for b in result["remove"]]
            strays = self._forget_snapshots(backup_server_id, removed, strays=True)
            say(f"removed {len(removed)} backups, kept {len(result['keep'])}"
                + (f"; forgot {strays} snapshots that no backup listed" if strays else ""))
        return Outcome({"removed": removed, "kept": len(result["keep"])}, lambda session: self._unlist(session, removed),
                       f"unlisted {len(removed)} backups")

    def delete(self, backup_id):
        """One backup, if the retention policy does not keep it."""
        backup = self.get(backup_id)
        kept = {b["id"]: reasons for b, reasons in self.plan(backup["backup_server_id"]).keep}
        if backup_id in kept and kept[backup_id] != ["no retention rule"]:
            raise Conflict(f"backup {backup_id} is kept by the retention policy ({', '.join(kept[backup_id])})",
                           {"backup_id": kept[backup_id]})
        self._forget_snapshots(backup["backup_server_id"], [backup_id], unlist=True)

    def _forget_snapshots(self, backup_server_id, backup_ids, strays=False, unlist=False):
        """Forget the backups' snapshots as the prune user, but those a kept backup reuses (a backup that
        reuses one keeps it); with ``strays`` the snapshots that no backup lists or reuses too (a run that
        restic had stored when another replica ended its task). Only a prune sweeps them: it runs alone on its
        backup server (one task per server at a time), so no run is about to list one. With ``unlist`` the
        backups leave the catalogue in the same transaction. Returns how many strays went."""
        if not backup_ids and not strays:
            return 0
        # Before the row lock below: refresh writes the backup server's row.
        made = strays and self._repository_made(backup_server_id)
        secret = self.keyring.secret()
        with self.Session() as session:
            # One at a time with a run's record step (_still_stored): it cannot list a backup that reuses a
            # snapshot forgotten here.
            session.get(BackupServer, backup_server_id, with_for_update=True)
            server = self.servers.load(session, backup_server_id)
            listed = {row.id: row for row in session.execute(select(Backup.id, Backup.snapshot_id, Backup.parts)
                                                             .where(Backup.backup_server_id == backup_server_id))}
            kept = reuse.snapshots_in_use((r.snapshot_id, r.parts) for i, r in listed.items() if i not in backup_ids)
            going = reuse.snapshots_in_use((r.snapshot_id, r.parts) for i, r in listed.items() if i in backup_ids)
            repository = self.servers.repository(server, secret, role="prune")
            stray = []
            if made:
                # restic 0.14's backup summary names a snapshot by its short id: a listed one is a prefix.
                stray = [s["id"] for s in repository.snapshots()
                         if not any(s["id"].startswith(snapshot) for snapshot in kept | going)]
            repository.forget(sorted(going - kept) + stray)
            if unlist:
                self._unlist(session, backup_ids)
                session.commit()
        return len(stray)

    def _repository_made(self, backup_server_id):
        """Whether a run made the backup server's repository yet."""
        with self.Session() as session:
            repository = self.servers.load(session, backup_server_id).repository
        return repository in self.servers.refresh(backup_server_id)["repositories"]

    @staticmethod
    def _unlist(session, backup_ids):
        session.execute(delete(Backup).where(Backup.id.in_(backup_ids)))


def failure_reason(exc):
    """What a failed run says: an engine's own message, else the error's."""
    return str(exc.args[0]) if isinstance(exc, EngineFailed) and exc.args else str(exc)
