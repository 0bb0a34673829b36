"""Every public operation, declared once: the app routes from it and the
OpenAPI document is generated from it, with the same schemas that validate."""
from dataclasses import dataclass, field

from shared.schemas import identity as identity_schemas
from shared.schemas import monitoring as monitoring_schemas
from shared.schemas import agent as agent_schemas
from shared.schemas import notifier as notifier_schemas
from shared.schemas import provisioner as provisioner_schemas
from shared.schemas import tasks as task_schemas
from shared.schemas import servers as server_schemas
from shared.schemas import settings as settings_schemas
from shared.schemas import updater as updater_schemas


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    family: str  # OpenAPI tag: PVServers, Monitoring or Admin
    summary: str
    body: type | None = None
    query: type | None = None
    response: type | None = None
    many: bool = False
    status: int = 200
    public: bool = False
    errors: tuple = field(default=(400, 401, 403))


PREFIX = "/api/v2"

OPERATIONS = [
    Operation("GET", "/servers", "PVServers", "List managed servers", query=server_schemas.ServerListQuery,
              response=server_schemas.ServerPage),
    Operation("POST", "/servers", "PVServers", "Register a managed server", body=server_schemas.ServerCreate,
              response=server_schemas.ServerDetail, status=201, errors=(400, 401, 403, 409)),
    Operation("GET", "/servers/{server_id}", "PVServers", "Show a managed server", response=server_schemas.ServerDetail,
              errors=(401, 403, 404)),
    Operation("PATCH", "/servers/{server_id}", "PVServers", "Change a managed server (its server user or an admin)",
              body=server_schemas.ServerUpdate, response=server_schemas.ServerDetail, errors=(400, 401, 403, 404, 409)),
    Operation("DELETE", "/servers/{server_id}", "PVServers",
              "Delete a managed server (its server user or an admin); first stops its components and removes the "
              "agent over SSH when it can: 204 if nothing had been installed, else 200 with what could not be done",
              response=provisioner_schemas.DeleteReport, status=200, errors=(401, 403, 404)),
    Operation("GET", "/settings", "Admin", "Show the admin settings (secrets only as *_set flags)",
              response=settings_schemas.AdminSettings),
    Operation("PATCH", "/settings", "Admin", "Change admin settings (admins)", body=settings_schemas.AdminSettings,
              response=settings_schemas.AdminSettings),
    Operation("POST", "/settings/rabbitmq/test", "Admin", "Try RabbitMQ credentials (saved ones fill the gaps)",
              body=settings_schemas.RabbitMQTest, response=settings_schemas.RabbitMQTestResult),
    Operation("GET", "/users", "Admin", "List users (admins)", response=identity_schemas.User, many=True),
    Operation("POST", "/users", "Admin", "Create a user (admins)", body=identity_schemas.UserCreate,
              response=identity_schemas.User, status=201, errors=(400, 401, 403, 409)),
    Operation("GET", "/users/{user_id}", "Admin", "Show a user", response=identity_schemas.User, errors=(401, 403, 404)),
    Operation("PATCH", "/users/{user_id}", "Admin", "Change a user's role or groups (admins)",
              body=identity_schemas.UserUpdate, response=identity_schemas.User, errors=(400, 401, 403, 404)),
    Operation("DELETE", "/users/{user_id}", "Admin", "Delete a user (admins)", status=204, errors=(401, 403, 404)),
    Operation("GET", "/tokens", "Admin", "List API tokens (yours; every one for admins)", response=identity_schemas.Token,
              many=True),
    Operation("POST", "/tokens", "Admin", "Create an API token; the secret is shown once", body=identity_schemas.TokenCreate,
              response=identity_schemas.NewToken, status=201, errors=(400, 401, 403, 404)),
    Operation("DELETE", "/tokens/{token_id}", "Admin", "Revoke an API token", status=204, errors=(401, 404)),

    # -- notifications (the notifier service) --------------------------------
    Operation("GET", "/notifications/channels", "Admin", "List notification channels (secrets as *_set flags)",
              response=notifier_schemas.Channel, many=True),
    Operation("POST", "/notifications/channels", "Admin", "Add an email, webhook or chat channel (admins)",
              body=notifier_schemas.ChannelCreate, response=notifier_schemas.Channel, status=201,
              errors=(400, 401, 403, 409)),
    Operation("GET", "/notifications/channels/{channel_id}", "Admin", "Show a channel",
              response=notifier_schemas.Channel, errors=(401, 403, 404)),
    Operation("PATCH", "/notifications/channels/{channel_id}", "Admin", "Change a channel (admins)",
              body=notifier_schemas.ChannelUpdate, response=notifier_schemas.Channel, errors=(400, 401, 403, 404, 409)),
    Operation("DELETE", "/notifications/channels/{channel_id}", "Admin", "Delete a channel (admins)",
              status=204, errors=(401, 403, 404)),
    Operation("POST", "/notifications/channels/{channel_id}/test", "Admin",
              "Send a test message now and say what the far end answered (admins)",
              response=notifier_schemas.ChannelTestResult, errors=(401, 403, 404)),
    Operation("GET", "/notifications/rules", "Admin", "List notification rules",
              response=notifier_schemas.Rule, many=True),
    Operation("POST", "/notifications/rules", "Admin", "Add a rule: which events, which servers, which channels",
              body=notifier_schemas.RuleCreate, response=notifier_schemas.Rule, status=201, errors=(400, 401, 403, 409)),
    Operation("GET", "/notifications/rules/{rule_id}", "Admin", "Show a rule", response=notifier_schemas.Rule,
              errors=(401, 403, 404)),
    Operation("PATCH", "/notifications/rules/{rule_id}", "Admin", "Change a rule (admins)",
              body=notifier_schemas.RuleCreate, response=notifier_schemas.Rule, errors=(400, 401, 403, 404, 409)),
    Operation("DELETE", "/notifications/rules/{rule_id}", "Admin", "Delete a rule (admins)", status=204,
              errors=(401, 403, 404)),
    Operation("GET", "/notifications/templates", "Admin",
              "Every template in effect, per event type and channel kind (defaults and overrides)",
              response=notifier_schemas.Template, many=True),
    Operation("POST", "/notifications/templates", "Admin",
              "Override the template of an event type and channel kind; one that fails to render is refused (admins)",
              body=notifier_schemas.TemplateSet, response=notifier_schemas.Template, status=201),
    Operation("DELETE", "/notifications/templates/{template_id}", "Admin",
              "Drop an override: the default applies again (admins)", status=204, errors=(401, 403, 404)),
    Operation("GET", "/notifications/deliveries", "Admin", "The delivery log, newest first",
              query=notifier_schemas.DeliveryQuery, response=notifier_schemas.Delivery, many=True),
    Operation("GET", "/notifications/deliveries/{delivery_id}", "Admin",
              "One delivery: its message and each attempt's result", response=notifier_schemas.DeliveryDetail,
              errors=(401, 403, 404)),
    Operation("POST", "/notifications/deliveries/{delivery_id}/retry", "Admin",
              "Send a dead-lettered delivery again (admins)", response=notifier_schemas.DeliveryDetail,
              errors=(401, 403, 404, 409)),

    # -- monitoring (monitoring-ingest; the heartbeat is published by the gateway) ----------
    Operation("POST", "/monitoring/heartbeat", "Monitoring",
              "An agent's heartbeat (agent token of that server only); 202 once the broker has it",
              body=agent_schemas.Heartbeat, response=monitoring_schemas.HeartbeatAccepted, status=202,
              errors=(400, 401, 403, 503)),
    Operation("GET", "/monitoring/servers/{server_id}/system", "Monitoring",
              "System statistics of a server (load, memory, swap, disks, connections) per step",
              query=monitoring_schemas.TimeRange, response=monitoring_schemas.SystemSeries),
    Operation("GET", "/monitoring/servers/{server_id}/dns", "Monitoring", "DNS aggregate: queries answered per step",
              query=monitoring_schemas.TimeRange, response=monitoring_schemas.DnsSeries),
    Operation("GET", "/monitoring/servers/{server_id}/records", "Monitoring",
              "When each DNS record of a server was last asked for", query=monitoring_schemas.LastAccessQuery,
              response=monitoring_schemas.LastAccessList),
    Operation("GET", "/monitoring/servers/{server_id}/heartbeats", "Monitoring",
              "Liveness of a server: state, heartbeats in the last 2 minutes, versions, latest heartbeats",
              query=monitoring_schemas.HeartbeatQuery, response=monitoring_schemas.ServerLiveness),
    Operation("PUT", "/monitoring/servers/{server_id}/retention", "Monitoring",
              "Keep a server's statistics longer than the admin setting (admins; null keeps the setting)",
              body=monitoring_schemas.RetentionOverride, response=monitoring_schemas.RetentionOverride),
    Operation("GET", "/monitoring/records/rps", "Monitoring",
              "Requests per second over time for one DNS record, searched by name",
              query=monitoring_schemas.RecordRpsQuery, response=monitoring_schemas.RecordRps),

    # -- updates (the updater service) ----------------------------------------
    Operation("GET", "/versions", "PVServers", "The version catalog per component (uploads; the registry in internet mode)",
              query=updater_schemas.VersionQuery, response=updater_schemas.VersionList, errors=(400, 401, 403)),
    Operation("POST", "/versions", "PVServers",
              "Upload an image (body: the .tar.gz itself, Content-Type application/gzip; ?component= to insist on one); "
              "a malformed or truncated file is refused and nothing is kept",
              query=updater_schemas.ImageUploadQuery, response=updater_schemas.Version, status=201,
              errors=(400, 401, 403, 409)),
    Operation("POST", "/servers/{server_id}/actions/push-update", "PVServers",
              "Update a server's components (all, or one; the newest or a given version); returns the task at once",
              body=updater_schemas.PushUpdate, response=updater_schemas.TaskAccepted, status=202,
              errors=(400, 401, 403, 404)),
    Operation("GET", "/servers/{server_id}/update-tasks", "PVServers", "A server's recent update tasks",
              response=updater_schemas.UpdateTask, many=True),
    Operation("GET", "/update-tasks/{task_id}", "PVServers", "An update task: state, step k of N, outcome per component",
              response=updater_schemas.UpdateTask, errors=(401, 403, 404)),
    Operation("GET", "/update-tasks/{task_id}/log", "PVServers", "Download an update task's step log (text)",
              errors=(401, 403, 404)),
    Operation("GET", "/rollouts", "PVServers", "Rollouts, newest first", response=updater_schemas.Rollout, many=True),
    Operation("POST", "/rollouts", "PVServers",
              "Update a set of servers in waves: a canary, then batches; pauses at the first failures",
              body=updater_schemas.RolloutCreate, response=updater_schemas.Rollout, status=201,
              errors=(400, 401, 403, 404, 409)),
    Operation("GET", "/rollouts/{rollout_id}", "PVServers", "A rollout and each server's outcome",
              response=updater_schemas.Rollout, errors=(401, 403, 404)),
    Operation("POST", "/rollouts/{rollout_id}/actions/resume", "PVServers", "Resume a paused rollout",
              response=updater_schemas.Rollout, errors=(401, 403, 404, 409)),
    Operation("POST", "/rollouts/{rollout_id}/actions/cancel", "PVServers",
              "Cancel a rollout: servers not yet started are left alone", response=updater_schemas.Rollout,
              errors=(401, 403, 404, 409)),
    Operation("POST", "/servers/{server_id}/actions/diagnostics", "PVServers",
              "Check the runtime, the monitoring component, RabbitMQ, heartbeats and disk on a server; the run is kept",
              response=updater_schemas.DiagnosticsRun, status=201, errors=(401, 403, 404)),
    Operation("GET", "/servers/{server_id}/diagnostics/{run_id}", "PVServers", "A diagnostics run",
              response=updater_schemas.DiagnosticsRun, errors=(401, 403, 404)),
    Operation("GET", "/servers/{server_id}/diagnostics/{run_id}/log", "PVServers",
              "Download a diagnostics run's log (text)", errors=(401, 403, 404)),

    # -- provisioning (provisioner) -----------------------------------------------------------
    Operation("GET", "/servers/{server_id}/bundle", "PVServers",
              "Setup bundle setup-<id>.tar for a manual install (issues a fresh agent token: older ones stop working)",
              errors=(401, 403, 404, 503)),
    Operation("POST", "/servers/{server_id}/actions/push-install", "PVServers",
              "Install the agent and components over SSH; returns the task at once (202)",
              body=provisioner_schemas.PushInstall, response=task_schemas.Task, status=202, errors=(400, 401, 403, 404)),
    Operation("DELETE", "/servers/{server_id}/host-key", "PVServers",
              "Forget the pinned SSH host key (after a legitimate reinstall of the server)", errors=(401, 403, 404)),
    Operation("GET", "/tasks/{task_id}", "PVServers", "A task: state and progress (step k of N)",
              response=task_schemas.Task, errors=(401, 403, 404)),
    Operation("GET", "/tasks/{task_id}/log", "PVServers", "A task's step log: start, end, duration and output of each step",
              response=task_schemas.TaskLog, errors=(401, 403, 404)),
]
