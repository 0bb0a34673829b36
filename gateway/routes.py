"""Every route the gateway serves, declared once.

``create_app`` adds one route per path from this table; the middleware reads
each request's operation from it (who may call it, its success status, its
Location header); the OpenAPI document is generated from it, with the same
schemas that validate. A path template says its parameters' types the Falcon
way with the converters below (``{server_id:id}``, ``{task_id:hexid}``): a value no object could have
(``0``, ``2**40``, ``../x``) matches no route, so it is a 404 before any service is asked.
"""
import enum
import re
from dataclasses import dataclass

from falcon.routing import BaseConverter

from gateway.resources import (backup, console, docs, health, identity, monitoring, notifier, provisioner, servers, session,
                               settings, tasks, updater)
from shared.schemas import backup as backup_schemas
from shared.schemas import identity as identity_schemas
from shared.schemas import monitoring as monitoring_schemas
from shared.schemas import agent as agent_schemas
from shared.schemas import notifier as notifier_schemas
from shared.schemas import provisioner as provisioner_schemas
from shared.schemas import tasks as task_schemas
from shared.schemas import servers as server_schemas
from shared.schemas import settings as settings_schemas
from shared.schemas import updater as updater_schemas
from shared.schemas.fields import INT32_MAX

PREFIX = "/api/v2"


class Auth(enum.Enum):
    PUBLIC = "public"  # no token
    USER = "user"  # a user's API token; an agent token is refused
    AGENT = "agent"  # a user's API token or an agent token (the resource checks it is its own server's)




class Access(enum.Enum):
    """Who may call an operation: what the role × route × ownership test holds every operation to. The services
    apply it (shared/authz.py: roles, and ``require_may_change`` for whatever changes one server)."""

    ANYONE = "anyone: no token needed"
    VIEWER = "any user: viewer, operator or admin"
    OPERATOR = "operators and admins"
    ADMIN = "admins"
    SELF = "the user it belongs to (their record, their tokens), or an admin; others are told it does not exist"
    SERVER_USER = "the server's server user, or an admin"
    SERVER_USER_OR_AGENT = "the server's server user, an admin, or the server's own agent token"
    OWN_AGENT = "only the server's own agent token"

    @property
    def auth(self):
        if self is Access.ANYONE:
            return Auth.PUBLIC
        if self in (Access.SERVER_USER_OR_AGENT, Access.OWN_AGENT):
            return Auth.AGENT
        return Auth.USER


ANYONE, VIEWER, OPERATOR, ADMIN, SELF = Access.ANYONE, Access.VIEWER, Access.OPERATOR, Access.ADMIN, Access.SELF
SERVER_USER, SERVER_USER_OR_AGENT, OWN_AGENT = Access.SERVER_USER, Access.SERVER_USER_OR_AGENT, Access.OWN_AGENT


class IdConverter(BaseConverter):
    """``{name:id}``: a row id, 1 to 2**31 - 1 (PostgreSQL's ``integer``), in plain decimal."""

    SCHEMA = {"type": "integer", "minimum": 1, "maximum": INT32_MAX}

    def convert(self, value):
        if not (value.isascii() and value.isdigit()) or len(value) > 10 or value.startswith("0"):
            return None
        number = int(value)
        return number if number <= INT32_MAX else None


class HexIdConverter(BaseConverter):
    """``{name:hexid}``: a task's or run's id, 32 lower-case hex digits (a uuid4's hex)."""

    SCHEMA = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    _HEX = re.compile(r"[0-9a-f]{32}")

    def convert(self, value):
        return value if self._HEX.fullmatch(value) else None


CONVERTERS = {"id": IdConverter, "hexid": HexIdConverter}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # a Falcon URI template below ``prefix``
    resource: type  # the class whose ``on_<method>`` serves it; one class per path
    family: str | None  # OpenAPI tag: PVServers, Monitoring or Admin; None: not part of the API document
    summary: str
    body: type | None = None
    body_required: bool = True  # False: no body at all means the schema's defaults (push-install, push-update)
    query: type | None = None
    response: type | None = None
    many: bool = False
    status: int = 200
    empty_status: int | None = None  # also answers this status, with no body (DELETE /servers/{id}: 204)
    content_type: str = "application/json"  # of the success answer
    access: Access | None = None  # required: routes() refuses an operation that does not say
    location: str | None = None  # the Location of what it made, below ``prefix``: {names} from the path or the answer
    errors: tuple = ()  # statuses beyond those its shape implies (gateway/openapi.py: statuses)
    idempotent: bool = False  # a create that takes an Idempotency-Key: a repeat gets the first answer
    prefix: str = PREFIX

    @property
    def auth(self):
        return self.access.auth

    @property
    def uri_template(self):
        return self.prefix + self.path

    @property
    def openapi_path(self):
        return self.prefix + re.sub(r"{(\w+):\w+}", r"{\1}", self.path)

    def parameters(self):
        """Each path parameter's name and OpenAPI schema, in order."""
        return [(name, CONVERTERS[converter].SCHEMA) for name, converter in re.findall(r"{(\w+):(\w+)}", self.path)]


OPERATIONS = [
    Operation("GET", "/servers", servers.ServerCollection, "PVServers", "List managed servers",
              query=server_schemas.ServerListQuery, response=server_schemas.ServerPage, access=VIEWER),
    Operation("POST", "/servers", servers.ServerCollection, "PVServers", "Register a managed server",
              body=server_schemas.ServerCreate, response=server_schemas.ServerDetail, status=201,
              errors=(409,), location="/servers/{id}", access=OPERATOR, idempotent=True),
    Operation("GET", "/servers/{server_id:id}", servers.ServerItem, "PVServers", "Show a managed server",
              response=server_schemas.ServerDetail, access=VIEWER),
    Operation("PATCH", "/servers/{server_id:id}", servers.ServerItem, "PVServers",
              "Change a managed server (its server user or an admin)",
              body=server_schemas.ServerUpdate, response=server_schemas.ServerDetail, errors=(409,),
              access=SERVER_USER),
    Operation("DELETE", "/servers/{server_id:id}", servers.ServerItem, "PVServers",
              "Delete a managed server (its server user or an admin); first stops its components and removes the "
              "agent over SSH when it can: 204 if nothing had been installed, else 200 with what could not be done",
              response=provisioner_schemas.DeleteReport, status=200, empty_status=204, access=SERVER_USER),
    Operation("GET", "/settings", settings.Settings, "Admin", "Show the admin settings (secrets only as *_set flags)",
              response=settings_schemas.AdminSettings, access=VIEWER),
    Operation("PATCH", "/settings", settings.Settings, "Admin", "Change admin settings (admins)",
              body=settings_schemas.AdminSettings, response=settings_schemas.AdminSettings, access=ADMIN),
    Operation("POST", "/settings/rabbitmq/test", settings.RabbitMQTest, "Admin",
              "Try RabbitMQ credentials (saved ones fill the gaps)",
              body=settings_schemas.RabbitMQTest, response=settings_schemas.RabbitMQTestResult, access=ADMIN),
    Operation("GET", "/users", identity.UserCollection, "Admin", "List users (admins)",
              response=identity_schemas.User, many=True, access=ADMIN),
    Operation("POST", "/users", identity.UserCollection, "Admin", "Create a user (admins)",
              body=identity_schemas.UserCreate, response=identity_schemas.User, status=201, errors=(409,),
              access=ADMIN, idempotent=True),
    Operation("GET", "/users/{user_id:id}", identity.UserItem, "Admin", "Show a user",
              response=identity_schemas.User, access=SELF),
    Operation("PATCH", "/users/{user_id:id}", identity.UserItem, "Admin", "Change a user's role or groups (admins)",
              body=identity_schemas.UserUpdate, response=identity_schemas.User, access=ADMIN),
    Operation("DELETE", "/users/{user_id:id}", identity.UserItem, "Admin", "Delete a user (admins)",
              status=204, access=ADMIN),
    Operation("POST", "/session", session.Session, "Admin",
              "Sign in to the web console with a user name and password: an HttpOnly, SameSite=Strict session cookie "
              "and the CSRF token every change made with it sends as X-CSRF-Token",
              body=identity_schemas.SignIn, response=identity_schemas.Session, errors=(401, 429), access=ANYONE),
    Operation("POST", "/session/password", session.PasswordChange, "Admin",
              "Change your own password: the current one is required (a wrong one counts as a failed sign-in); "
              "your other console sessions end", body=identity_schemas.PasswordChange, response=identity_schemas.User,
              errors=(429,), access=VIEWER),
    Operation("GET", "/session", session.Session, "Admin", "Who is signed in (or whose token this is)",
              response=identity_schemas.Session, access=VIEWER),
    Operation("DELETE", "/session", session.Session, "Admin", "Sign out: the console session ends", status=204,
              access=VIEWER),
    Operation("GET", "/tokens", identity.TokenCollection, "Admin", "List API tokens (yours; every one for admins)",
              query=identity_schemas.TokenListQuery, response=identity_schemas.Token, many=True, access=VIEWER),
    Operation("POST", "/tokens", identity.TokenCollection, "Admin", "Create an API token; the secret is shown once",
              body=identity_schemas.TokenCreate, response=identity_schemas.NewToken, status=201, errors=(404,),
              access=VIEWER, idempotent=True),
    Operation("DELETE", "/tokens/{token_id:id}", identity.TokenItem, "Admin", "Revoke an API token",
              status=204, access=SELF),

    # -- notifications (the notifier service) --------------------------------
    Operation("GET", "/notifications/channels", notifier.ChannelCollection, "Admin",
              "List notification channels (secrets as *_set flags)", response=notifier_schemas.Channel, many=True,
              access=VIEWER),
    Operation("POST", "/notifications/channels", notifier.ChannelCollection, "Admin",
              "Add an email, webhook or chat channel (admins)",
              body=notifier_schemas.ChannelCreate, response=notifier_schemas.Channel, status=201,
              errors=(409,), location="/notifications/channels/{id}", access=ADMIN, idempotent=True),
    Operation("GET", "/notifications/channels/{channel_id:id}", notifier.ChannelItem, "Admin", "Show a channel",
              response=notifier_schemas.Channel, access=VIEWER),
    Operation("PATCH", "/notifications/channels/{channel_id:id}", notifier.ChannelItem, "Admin",
              "Change a channel (admins)",
              body=notifier_schemas.ChannelUpdate, response=notifier_schemas.Channel, errors=(409,), access=ADMIN),
    Operation("DELETE", "/notifications/channels/{channel_id:id}", notifier.ChannelItem, "Admin",
              "Delete a channel (admins)", status=204, access=ADMIN),
    Operation("POST", "/notifications/channels/{channel_id:id}/test", notifier.ChannelTest, "Admin",
              "Send a test message now and say what the far end answered (admins)",
              response=notifier_schemas.ChannelTestResult, access=ADMIN),
    Operation("GET", "/notifications/rules", notifier.RuleCollection, "Admin", "List notification rules",
              response=notifier_schemas.Rule, many=True, access=VIEWER),
    Operation("POST", "/notifications/rules", notifier.RuleCollection, "Admin",
              "Add a rule: which events, which servers, which channels",
              body=notifier_schemas.RuleCreate, response=notifier_schemas.Rule, status=201, errors=(409,),
              location="/notifications/rules/{id}", access=ADMIN, idempotent=True),
    Operation("GET", "/notifications/rules/{rule_id:id}", notifier.RuleItem, "Admin", "Show a rule",
              response=notifier_schemas.Rule, access=VIEWER),
    Operation("PATCH", "/notifications/rules/{rule_id:id}", notifier.RuleItem, "Admin", "Change a rule (admins)",
              body=notifier_schemas.RuleCreate, response=notifier_schemas.Rule, errors=(409,), access=ADMIN),
    Operation("DELETE", "/notifications/rules/{rule_id:id}", notifier.RuleItem, "Admin", "Delete a rule (admins)",
              status=204, access=ADMIN),
    Operation("GET", "/notifications/templates", notifier.TemplateCollection, "Admin",
              "Every template in effect, per event type and channel kind (defaults and overrides)",
              response=notifier_schemas.Template, many=True, access=VIEWER),
    Operation("POST", "/notifications/templates", notifier.TemplateCollection, "Admin",
              "Override the template of an event type and channel kind; one that fails to render is refused (admins)",
              body=notifier_schemas.TemplateSet, response=notifier_schemas.Template, status=201,
              location="/notifications/templates/{id}", access=ADMIN, idempotent=True),
    Operation("DELETE", "/notifications/templates/{template_id:id}", notifier.TemplateItem, "Admin",
              "Drop an override: the default applies again (admins)", status=204, access=ADMIN),
    Operation("GET", "/notifications/deliveries", notifier.DeliveryCollection, "Admin", "The delivery log, newest first",
              query=notifier_schemas.DeliveryQuery, response=notifier_schemas.Delivery, many=True, access=VIEWER),
    Operation("GET", "/notifications/deliveries/{delivery_id:id}", notifier.DeliveryItem, "Admin",
              "One delivery: its message and each attempt's result", response=notifier_schemas.DeliveryDetail,
              access=VIEWER),
    Operation("POST", "/notifications/deliveries/{delivery_id:id}/retry", notifier.DeliveryRetry, "Admin",
              "Send a dead-lettered delivery again (admins)", response=notifier_schemas.DeliveryDetail,
              errors=(409,), access=ADMIN),

    # -- monitoring (monitoring-ingest; the heartbeat is published by the gateway) ----------
    Operation("POST", "/monitoring/heartbeat", monitoring.HeartbeatCollection, "Monitoring",
              "An agent's heartbeat (agent token of that server only); 202 once the broker has it",
              body=agent_schemas.Heartbeat, response=monitoring_schemas.HeartbeatAccepted, status=202,
              access=OWN_AGENT),
    Operation("GET", "/monitoring/servers/{server_id:id}/system", monitoring.ServerSystem, "Monitoring",
              "System statistics of a server (load, memory, swap, disks, connections) per step",
              query=monitoring_schemas.TimeRange, response=monitoring_schemas.SystemSeries, access=VIEWER),
    Operation("GET", "/monitoring/servers/{server_id:id}/dns", monitoring.ServerDns, "Monitoring",
              "DNS aggregate: queries answered per step",
              query=monitoring_schemas.TimeRange, response=monitoring_schemas.DnsSeries, access=VIEWER),
    Operation("GET", "/monitoring/servers/{server_id:id}/records", monitoring.ServerRecords, "Monitoring",
              "When each DNS record of a server was last asked for", query=monitoring_schemas.LastAccessQuery,
              response=monitoring_schemas.LastAccessList, access=VIEWER),
    Operation("GET", "/monitoring/servers/{server_id:id}/records/hits", monitoring.ServerRecordHits, "Monitoring",
              "Every DNS record's hits in a period, sorted and paged, with the total and each one's last access",
              query=monitoring_schemas.RecordHitsQuery, response=monitoring_schemas.RecordHitsPage, access=VIEWER),
    Operation("GET", "/monitoring/servers/{server_id:id}/heartbeats", monitoring.ServerLiveness, "Monitoring",
              "Liveness of a server: state, heartbeats in the last 2 minutes, versions, latest heartbeats",
              query=monitoring_schemas.HeartbeatQuery, response=monitoring_schemas.ServerLiveness, access=VIEWER),
    Operation("PUT", "/monitoring/servers/{server_id:id}/retention", monitoring.ServerRetention, "Monitoring",
              "Keep a server's statistics longer than the admin setting (admins; null keeps the setting)",
              body=monitoring_schemas.RetentionOverride, response=monitoring_schemas.RetentionOverride, access=ADMIN),
    Operation("GET", "/monitoring/records/rps", monitoring.RecordRps, "Monitoring",
              "Requests per second over time for one DNS record, searched by name",
              query=monitoring_schemas.RecordRpsQuery, response=monitoring_schemas.RecordRps, access=VIEWER),

    Operation("GET", "/dead-letters", monitoring.DeadLetterCollection, "Admin",
              "Messages a consumer refused (monitoring.dead), oldest first, each with the reason (admins)",
              query=monitoring_schemas.DeadLetterQuery, response=monitoring_schemas.DeadLetterList, access=ADMIN),
    Operation("GET", "/dead-letters/{letter_id:hexid}", monitoring.DeadLetterItem, "Admin",
              "One dead letter with its body (admins)", response=monitoring_schemas.DeadLetterDetail, access=ADMIN),
    Operation("POST", "/dead-letters/{letter_id:hexid}/retry", monitoring.DeadLetterRetry, "Admin",
              "Send a dead letter through again; 409 if the consumer would refuse it again, saying why (admins)",
              response=monitoring_schemas.DeadLetter, errors=(409,), access=ADMIN),
    Operation("DELETE", "/dead-letters/{letter_id:hexid}", monitoring.DeadLetterItem, "Admin",
              "Drop a dead letter (admins)", status=204, access=ADMIN),

    # -- updates (the updater service) ----------------------------------------
    Operation("GET", "/versions", updater.VersionCollection, "PVServers",
              "The version catalog per component (uploads; the registry in internet mode)",
              query=updater_schemas.VersionQuery, response=updater_schemas.VersionList, errors=(502,), access=VIEWER),
    Operation("POST", "/versions", updater.VersionCollection, "PVServers",
              "Upload an image (body: the .tar.gz itself, Content-Type application/gzip; ?component= to insist on one); "
              "a malformed or truncated file is refused and nothing is kept",
              query=updater_schemas.ImageUploadQuery, response=updater_schemas.Version, status=201,
              errors=(408, 409, 411, 413), access=ADMIN, idempotent=True),
    Operation("POST", "/servers/{server_id:id}/actions/push-update", updater.PushUpdate, "PVServers",
              "Update a server's components (all, or one; the newest or a given version); returns the task at once. "
              "One update per server and component at a time: another is refused (409, details.task_id names the "
              "running task)",
              body=updater_schemas.PushUpdate, body_required=False, response=updater_schemas.TaskAccepted, status=202,
              location="/update-tasks/{task_id}", errors=(409,),  # 409: an update of that component still runs
              access=SERVER_USER_OR_AGENT, idempotent=True),  # pv_update.py run by hand on the server asks with the agent token
    Operation("GET", "/servers/{server_id:id}/update-tasks", updater.ServerUpdateTasks, "PVServers",
              "A server's recent update tasks", response=updater_schemas.UpdateTask, many=True, access=VIEWER),
    Operation("GET", "/update-tasks/{task_id:hexid}", updater.UpdateTaskItem, "PVServers",
              "An update task: state, step k of N, outcome per component",
              response=updater_schemas.UpdateTask, access=VIEWER),
    Operation("GET", "/update-tasks/{task_id:hexid}/log", updater.UpdateTaskLog, "PVServers",
              "Download an update task's step log (text)", content_type="text/plain", access=VIEWER),
    Operation("GET", "/rollouts", updater.RolloutCollection, "PVServers", "Rollouts, newest first",
              response=updater_schemas.Rollout, many=True, access=VIEWER),
    Operation("POST", "/rollouts", updater.RolloutCollection, "PVServers",
              "Update a set of servers in waves: a canary, then batches; pauses at the first failures",
              body=updater_schemas.RolloutCreate, response=updater_schemas.Rollout, status=201,
              errors=(404, 409), location="/rollouts/{id}", access=SERVER_USER, idempotent=True),
    Operation("GET", "/rollouts/{rollout_id:id}", updater.RolloutItem, "PVServers", "A rollout and each server's outcome",
              response=updater_schemas.Rollout, access=VIEWER),
    Operation("POST", "/rollouts/{rollout_id:id}/actions/resume", updater.RolloutResume, "PVServers",
              "Resume a paused rollout", response=updater_schemas.Rollout, errors=(409,), access=SERVER_USER),
    Operation("POST", "/rollouts/{rollout_id:id}/actions/cancel", updater.RolloutCancel, "PVServers",
              "Cancel a rollout: servers not yet started are left alone", response=updater_schemas.Rollout,
              errors=(409,), access=SERVER_USER),
    Operation("POST", "/servers/{server_id:id}/actions/diagnostics", updater.Diagnostics, "PVServers",
              "Check SSH, the runtime, the monitoring component, RabbitMQ, disk and heartbeats on a server: a task of "
              "kind diagnostics, returned at once (202), one step per check (follow it at /tasks/{id}); while "
              "another run of the server is queued or running, 409 names it in details.task_id",
              response=updater_schemas.DiagnosticsRun, status=202, location="/tasks/{id}", errors=(409,),
              access=SERVER_USER, idempotent=True),
    Operation("GET", "/servers/{server_id:id}/diagnostics", updater.DiagnosticsCollection, "PVServers",
              "A server's diagnostics runs with each check's result, newest first (the last 50; all of them: "
              "GET /tasks?kind=diagnostics&server_id=)", response=updater_schemas.DiagnosticsRun, many=True,
              access=VIEWER),
    Operation("GET", "/servers/{server_id:id}/diagnostics/{run_id:hexid}", updater.DiagnosticsItem, "PVServers",
              "A diagnostics run (its task) and each check's result so far", response=updater_schemas.DiagnosticsRun,
              access=VIEWER),
    Operation("GET", "/servers/{server_id:id}/diagnostics/{run_id:hexid}/log", updater.DiagnosticsLog, "PVServers",
              "Download a diagnostics run's step log (text)", content_type="text/plain", access=VIEWER),

    # -- provisioning (provisioner) -----------------------------------------------------------
    Operation("GET", "/servers/{server_id:id}/bundle", provisioner.Bundle, "PVServers",
              "Setup bundle setup-<id>.tar for a manual install (issues a fresh agent token: older ones stop working)",
              content_type="application/x-tar", access=SERVER_USER),
    Operation("POST", "/servers/{server_id:id}/actions/push-install", provisioner.PushInstall, "PVServers",
              "Install the agent and components over SSH; returns the task at once (202); while another install of "
              "the server is queued or running, 409 names it in details.task_id",
              body=provisioner_schemas.PushInstall, body_required=False, response=task_schemas.Task, status=202,
              location="/tasks/{id}", errors=(409,), access=SERVER_USER, idempotent=True),  # 409: an install of it still runs
    Operation("GET", "/servers/{server_id:id}/inspection", provisioner.ServerInspection, "PVServers",
              "The stored record beside what the server reports (components, versions, state, last heartbeat, "
              "broker user), and where they disagree", response=provisioner_schemas.ServerInspection, access=VIEWER),
    Operation("GET", "/reconcile", provisioner.Reconcile, "Admin",
              "Every disagreement across the fleet: stored version not the reported one, broker users and agent "
              "tokens of deleted servers, tasks left running by a replica that is gone (admins)",
              response=provisioner_schemas.Reconciliation, access=ADMIN),
    Operation("POST", "/reconcile", provisioner.Reconcile, "Admin",
              "Fix the safe disagreements (the stored side is made to say what is true) and list each (admins)",
              response=provisioner_schemas.Reconciliation, access=ADMIN),
    Operation("DELETE", "/servers/{server_id:id}/host-key", provisioner.HostKey, "PVServers",
              "Forget the pinned SSH host key (after a legitimate reinstall of the server)",
              response=provisioner_schemas.HostKeyForgotten, access=SERVER_USER),
    Operation("GET", "/tasks", tasks.TaskCollection, "PVServers",
              "Tasks of every kind (install, update, ...), newest first; filter by server, kind, state and time",
              query=task_schemas.TaskQuery, response=task_schemas.TaskPage, access=VIEWER),
    Operation("GET", "/tasks/{task_id:hexid}", tasks.TaskItem, "PVServers", "A task: state and progress (step k of N)",
              response=task_schemas.Task, access=VIEWER),
    Operation("GET", "/tasks/{task_id:hexid}/log", tasks.TaskLog, "PVServers",
              "A task's step log: start, end, duration and output of each step",
              response=task_schemas.TaskLog, access=VIEWER),
    Operation("POST", "/tasks/{task_id:hexid}/cancel", tasks.TaskCancel, "PVServers",
              "Cancel a task (its server's server user, or an admin): a queued one ends cancelled at once; a running "
              "one is marked (cancel_requested_at) and stops at its next safe point between steps, ending cancelled "
              "(an install only before its bundle reaches the server, an update between components). 409: it has "
              "already ended, or its kind cannot stop while it runs",
              response=task_schemas.Task, status=202, errors=(409,), access=SERVER_USER),

    # -- managed backups (the backup service) ---------------------------------------------------
    Operation("GET", "/backup-servers", backup.BackupServerCollection, "Backups",
              "Backup servers, with their disk, last backup and last verification",
              response=backup_schemas.BackupServer, many=True, access=VIEWER),
    Operation("POST", "/backup-servers", backup.BackupServerCollection, "Backups",
              "Register a managed server with the backup component as a backup server: enrolls with its daemon "
              "(admins; the managed-backup password must be set)",
              body=backup_schemas.BackupServerCreate, response=backup_schemas.BackupServer, status=201,
              location="/backup-servers/{id}", errors=(404, 409, 502), access=ADMIN, idempotent=True),
    Operation("GET", "/backup-servers/{backup_server_id:id}", backup.BackupServerItem, "Backups", "Show a backup server",
              response=backup_schemas.BackupServer, access=VIEWER),
    Operation("PATCH", "/backup-servers/{backup_server_id:id}", backup.BackupServerItem, "Backups",
              "Change what a backup server's backups hold (admins)",
              body=backup_schemas.BackupServerUpdate, response=backup_schemas.BackupServer, access=ADMIN),
    Operation("DELETE", "/backup-servers/{backup_server_id:id}", backup.BackupServerItem, "Backups",
              "Stop using a backup server (admins); what it stores stays on it", status=204, access=ADMIN),
    Operation("GET", "/backup-servers/{backup_server_id:id}/retention-policy", backup.RetentionPolicy, "Backups",
              "A backup server's retention policy (0: the rule keeps nothing; no rule at all keeps everything)",
              response=backup_schemas.RetentionPolicy, access=VIEWER),
    Operation("PUT", "/backup-servers/{backup_server_id:id}/retention-policy", backup.RetentionPolicy, "Backups",
              "Set a backup server's retention policy (admins)",
              body=backup_schemas.RetentionPolicy, response=backup_schemas.RetentionPolicy, access=ADMIN),
    Operation("POST", "/backup-servers/{backup_server_id:id}/actions/prune", backup.Prune, "Backups",
              "Apply the retention policy: a dry run (the default) lists what would go and why each kept backup "
              "stays; dry_run false also queues the prune as a task (in `task`)",
              body=backup_schemas.PruneRequest, body_required=False, response=backup_schemas.PruneResult,
              errors=(409,), access=ADMIN),
    Operation("GET", "/backups", backup.BackupCollection, "Backups", "The catalogue of stored backups, newest first",
              query=backup_schemas.BackupQuery, response=backup_schemas.Backup, many=True, access=VIEWER),
    Operation("POST", "/backups", backup.BackupCollection, "Backups",
              "Back up the control plane to a backup server now; returns the task at once (202)",
              body=backup_schemas.RunBackup, response=task_schemas.Task, status=202, location="/tasks/{id}",
              errors=(404, 409), access=ADMIN, idempotent=True),
    Operation("GET", "/backups/{backup_id:hexid}", backup.BackupItem, "Backups", "Show a backup and its verification",
              response=backup_schemas.Backup, access=VIEWER),
    Operation("DELETE", "/backups/{backup_id:hexid}", backup.BackupItem, "Backups",
              "Delete a backup that the retention policy does not keep (admins; 409 names the rules that keep it)",
              status=204, errors=(409, 502), access=ADMIN),
    Operation("POST", "/backups/{backup_id:hexid}/actions/verify", backup.Verify, "Backups",
              "Verify a backup: the backup server re-hashes every object, then it is restored into a scratch "
              "database here; returns the task (202)",
              response=task_schemas.Task, status=202, location="/tasks/{id}", errors=(409,), access=ADMIN, idempotent=True),
    Operation("POST", "/backups/{backup_id:hexid}/actions/restore", backup.Restore, "Backups",
              "Restore a backup into a new database (`into`), or in place of the control plane's own database "
              "(`live: true` with `confirm`: the live database's name; seconds of downtime, the database as it was "
              "kept under a new name; a wrong `confirm` is a 400 naming it); returns the task (202)",
              body=backup_schemas.RestoreRequest, response=task_schemas.Task, status=202, location="/tasks/{id}",
              errors=(409,), access=ADMIN, idempotent=True),
    Operation("GET", "/backup-schedules", backup.ScheduleCollection, "Backups", "Backup and verification schedules",
              response=backup_schemas.Schedule, many=True, access=VIEWER),
    Operation("POST", "/backup-schedules", backup.ScheduleCollection, "Backups",
              "Schedule backups or verifications of a backup server (cron, UTC; admins)",
              body=backup_schemas.ScheduleCreate, response=backup_schemas.Schedule, status=201,
              location="/backup-schedules", errors=(404,), access=ADMIN),
    Operation("DELETE", "/backup-schedules/{schedule_id:id}", backup.ScheduleItem, "Backups", "Delete a schedule (admins)",
              status=204, access=ADMIN),
    Operation("GET", "/backup-key", backup.BackupKey, "Backups",
              "The backup key wrapped by the managed-backup password, to keep off this control plane (admins)",
              response=backup_schemas.WrappedKey, errors=(409,), access=ADMIN),

    # -- about the API itself: served, but not operations of the document --------------------
    Operation("GET", "/openapi.json", docs.OpenAPIDocument, None, "This API's OpenAPI document", access=ANYONE),
    Operation("GET", "/asyncapi.json", docs.AsyncAPIDocument, None,
              "The AsyncAPI document of the events Steward publishes on RabbitMQ", access=ANYONE),
    Operation("GET", "/docs", docs.SwaggerPage, None, "The OpenAPI document in Swagger UI", access=ANYONE),
    Operation("GET", "/", console.ConsolePage, None, "The web console", prefix="", access=ANYONE),
    Operation("GET", "/healthz", health.Health, None,
              "For load balancers: the broker answers, every service has a replica, the ingest consumer keeps up",
              prefix="", access=ANYONE),
    Operation("GET", "/healthz/services", health.ServiceHealth, None,
              "What /healthz says, and every service asked to answer (with its database)", prefix="", access=VIEWER),
]


def routes(operations=OPERATIONS):
    """(URI template, resource class) for each path, in table order; one class serves all of a path's methods."""
    classes = {}
    for op in operations:
        if op.access is None:
            raise ValueError(f"{op.method} {op.uri_template}: say who may call it (access=)")
        if not hasattr(op.resource, f"on_{op.method.lower()}"):
            raise ValueError(f"{op.method} {op.uri_template}: {op.resource!r} has no on_{op.method.lower()}")
        known = classes.setdefault(op.uri_template, op.resource)
        if known is not op.resource:
            raise ValueError(f"{op.uri_template} names two resources: {known.__name__} and {op.resource.__name__}")
    return list(classes.items())
