"""Managed backups: backup servers, their retention policies, schedules and the backups (the backup service owns them)."""
from gateway.resources import json_body, principal


class BackupServerCollection:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp):
        resp.media = self.backup.list_backup_servers(principal(req))

    def on_post(self, req, resp):
        resp.media = self.backup.create_backup_server(principal(req), json_body(req))


class BackupServerItem:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp, backup_server_id):
        resp.media = self.backup.get_backup_server(principal(req), backup_server_id)

    def on_patch(self, req, resp, backup_server_id):
        resp.media = self.backup.update_backup_server(principal(req), backup_server_id, json_body(req))

    def on_delete(self, req, resp, backup_server_id):
        self.backup.delete_backup_server(principal(req), backup_server_id)


class RetentionPolicy:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp, backup_server_id):
        resp.media = self.backup.get_retention_policy(principal(req), backup_server_id)

    def on_put(self, req, resp, backup_server_id):
        resp.media = self.backup.set_retention_policy(principal(req), backup_server_id, json_body(req))


class Prune:
    def __init__(self, backup):
        self.backup = backup

    def on_post(self, req, resp, backup_server_id):
        resp.media = self.backup.prune(principal(req), backup_server_id, json_body(req))


class BackupCollection:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp):
        resp.media = self.backup.list_backups(principal(req), dict(req.params))

    def on_post(self, req, resp):
        resp.media = self.backup.run_backup(principal(req), json_body(req))


class BackupItem:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp, backup_id):
        resp.media = self.backup.get_backup(principal(req), backup_id)

    def on_delete(self, req, resp, backup_id):
        self.backup.delete_backup(principal(req), backup_id)


class Verify:
    def __init__(self, backup):
        self.backup = backup

    def on_post(self, req, resp, backup_id):
        resp.media = self.backup.verify_backup(principal(req), backup_id)


class Restore:
    def __init__(self, backup):
        self.backup = backup

    def on_post(self, req, resp, backup_id):
        resp.media = self.backup.restore_backup(principal(req), backup_id, json_body(req))


class ScheduleCollection:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp):
        resp.media = self.backup.list_schedules(principal(req))

    def on_post(self, req, resp):
        resp.media = self.backup.create_schedule(principal(req), json_body(req))


class ScheduleItem:
    def __init__(self, backup):
        self.backup = backup

    def on_delete(self, req, resp, schedule_id):
        self.backup.delete_schedule(principal(req), schedule_id)


class BackupKey:
    def __init__(self, backup):
        self.backup = backup

    def on_get(self, req, resp):
        resp.media = self.backup.export_key(principal(req))
