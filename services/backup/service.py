"""The backup service's entrypoints: RPC for the gateway, timers that fire schedules, run queued
tasks and pull the backup servers' status. Domain code lives in backup_servers, backups,
retention, schedules and keys."""
from nameko.timer import timer
from sqlalchemy.engine import make_url

from services.backup.dependencies import BackupRunner
from services.backup.models import Base, idempotency_keys
from services.backup.schedules import Schedules
from shared.authz import require_role
from shared.db import ping
from shared.errors import ValidationFailed
from shared.dependencies import DatabaseSession, Events, IdempotencyKeys, RequestContext, RpcProxy, rpc
from shared.schemas import backup as schemas
from shared.schemas import load_or_raise
from shared.schemas import tasks as task_schemas
from shared.tasks import task_dict, utcnow
from shared.task_runner import TaskQueries


class BackupService(TaskQueries):
    name = "backup"

    db = DatabaseSession(Base)
    events = Events()  # the outbox and its relay; the backup tasks emit through it
    backing = BackupRunner()
    idempotency = IdempotencyKeys(idempotency_keys)
    inventory = RpcProxy("inventory")
    request_id = RequestContext()

    def task_workers(self):
        return self.backing  # its tasks can be cancelled (TaskQueries.cancel_task)

    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db)}

    # -- backup servers --------------------------------------------------------------
    @rpc
    def create_backup_server(self, principal, data):
        require_role(principal, "admin")

        def create():  # enrolled once: a repeat gets this answer (the daemon's enrollment token is spent)
            loaded = load_or_raise(schemas.BackupServerCreate(), data, "backup server")
            server = self.inventory.get_server(principal, loaded["server_id"])
            self.backing.keyring.secret()  # no backup without the password: say so now, not at the first run
            return schemas.BackupServer().dump(self.backing.servers.register(server, loaded, session=self.db))

        return self.idempotency.answer(self.db, principal, data, create)

    @rpc
    def list_backup_servers(self, principal):
        require_role(principal, "viewer")
        return schemas.BackupServer(many=True).dump(self.backing.servers.list())

    @rpc
    def get_backup_server(self, principal, backup_server_id):
        require_role(principal, "viewer")
        return schemas.BackupServer().dump(self.backing.servers.get(backup_server_id))

    @rpc
    def update_backup_server(self, principal, backup_server_id, data):
        require_role(principal, "admin")
        data = load_or_raise(schemas.BackupServerUpdate(), data, "backup server")
        return schemas.BackupServer().dump(self.backing.servers.update(backup_server_id, data))

    @rpc
    def delete_backup_server(self, principal, backup_server_id):
        require_role(principal, "admin")
        self.backing.servers.forget(backup_server_id)

    @rpc
    def get_retention_policy(self, principal, backup_server_id):
        require_role(principal, "viewer")
        return schemas.RetentionPolicy().dump(self.backing.servers.policy(backup_server_id))

    @rpc
    def set_retention_policy(self, principal, backup_server_id, data):
        require_role(principal, "admin")
        rules = load_or_raise(schemas.RetentionPolicy(), data, "retention policy")
        return schemas.RetentionPolicy().dump(self.backing.servers.set_policy(backup_server_id, rules))

    @rpc
    def prune(self, principal, backup_server_id, data=None):
        """A dry run answers what prune would remove and why each kept one stays; a real one is a task."""
        require_role(principal, "admin")
        request = load_or_raise(schemas.PruneRequest(), data or {}, "prune")
        plan = self.backing.backups.prune(backup_server_id, dry_run=True)
        plan["task"] = None
        if not request["dry_run"]:
            server = self.backing.servers.get(backup_server_id)
            plan["dry_run"] = False
            plan["task"] = self.backing.queue("prune", server, {"backup_server_id": backup_server_id}, principal["name"])
        return schemas.PruneResult().dump(plan)

    def _queued(self, principal, request, load):
        """The task ``load()`` names (kind, backup server, params), queued with the request's Idempotency-Key: the
        task and its kept answer commit together, and a repeat of the request gets this task."""
        def create():
            kind, server, params = load()
            task = self.backing.queue(kind, server, params, principal["name"], session=self.db)
            return task_schemas.Task().dump(task_dict(task))

        answer = self.idempotency.answer(self.db, principal, request, create)
        self.backing.kick()
        return answer

    # -- backups -----------------------------------------------------------------------
    @rpc
    def list_backups(self, principal, query=None):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.BackupQuery(), query or {}, "query")
        return schemas.Backup(many=True).dump(self.backing.backups.list(query.get("backup_server_id")))

    @rpc
    def get_backup(self, principal, backup_id):
        require_role(principal, "viewer")
        return schemas.Backup().dump(self.backing.backups.get(backup_id))

    @rpc
    def run_backup(self, principal, data):
        require_role(principal, "admin")

        def load():
            server = self.backing.servers.get(load_or_raise(schemas.RunBackup(), data, "backup")["backup_server_id"])
            self.backing.keyring.secret()  # a missing or wrong password is this call's 409/400, not a failed task
            return "backup", server, {"backup_server_id": server["id"]}

        return self._queued(principal, data, load)

    @rpc
    def verify_backup(self, principal, backup_id):
        require_role(principal, "admin")

        def load():
            server = self.backing.servers.get(self.backing.backups.get(backup_id)["backup_server_id"])
            return "verify", server, {"backup_id": backup_id, "backup_server_id": server["id"]}

        return self._queued(principal, {"backup_id": backup_id}, load)

    @rpc
    def restore_backup(self, principal, backup_id, data):
        require_role(principal, "admin")

        def load():
            request = load_or_raise(schemas.RestoreRequest(), data, "restore")
            server = self.backing.servers.get(self.backing.backups.get(backup_id)["backup_server_id"])
            params = {"backup_id": backup_id, "backup_server_id": server["id"], "into": request.get("into")}
            if request["live"]:
                params.update(into=self._confirmed(request.get("confirm")), live=True)
            return "restore", server, params

        return self._queued(principal, {"backup_id": backup_id, "data": data}, load)

    def _confirmed(self, confirm):
        """A live restore replaces the control plane's database: only with its name typed out."""
        live = make_url(self.backing.backups.database_url).database
        if confirm != live:
            raise ValidationFailed(f"a live restore replaces the live database {live} with the backup: confirm it "
                                   f'with "confirm": "{live}"', {"confirm": [f"must be {live!r}"], "live_database": [live]})
        return live

    @rpc
    def delete_backup(self, principal, backup_id):
        require_role(principal, "admin")
        self.backing.backups.delete(backup_id)

    @rpc
    def export_key(self, principal):
        """The wrapped repository secret: with the managed-backup password it restores without this control plane."""
        require_role(principal, "admin")
        return {"wrapped_secret": self.backing.keyring.exported()}

    # -- schedules ---------------------------------------------------------------------
    @rpc
    def create_schedule(self, principal, data):
        require_role(principal, "admin")
        data = load_or_raise(schemas.ScheduleCreate(), data, "schedule")
        self.backing.servers.get(data["backup_server_id"])
        return schemas.Schedule().dump(Schedules(self.backing.Session, utcnow).create(data))

    @rpc
    def list_schedules(self, principal):
        require_role(principal, "viewer")
        return schemas.Schedule(many=True).dump(Schedules(self.backing.Session, utcnow).list())

    @rpc
    def delete_schedule(self, principal, schedule_id):
        require_role(principal, "admin")
        Schedules(self.backing.Session, utcnow).delete(schedule_id)

    # -- timers ------------------------------------------------------------------------
    @timer(interval=2)
    def run_tasks(self):
        self.backing.fire_schedules()
        self.backing.poll()

    @timer(interval=30)
    def pull_status(self):
        self.backing.refresh_servers()
