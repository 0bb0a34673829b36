"""Message templates: defaults per event type, operators' overrides, and rendering.

Templates are Jinja in a sandbox with strict undefined names, so a template
that names something the event lacks fails when it is saved (rendered against
a sample of its event type), not when a server goes down.

Every template sees ``event`` (the payload), ``server`` (``id``, ``name``),
``server_url`` (a link to the server in the API), ``severity``,
``event_type`` and ``public_url``. The digest sees ``items`` (one such
context per event), ``count`` and ``counts`` (events per type).
"""
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from services.notifier.models import Template
from shared.errors import TemplateNotFound, ValidationFailed
from shared.events import build_event
from shared.schemas.notifier import CHANNEL_KINDS, TEMPLATE_EVENTS

DIGEST = "digest"
FLAPPING = "server_flapping"

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
                            keep_trailing_newline=False)
compile_template = lru_cache(maxsize=512)(_ENV.from_string)

_SERVER_DOWN_ADVICE = (
    "What to do: check that the host is powered on and reachable from Steward, and that the Steward agent "
    "runs on it (systemctl status steward-agent). Its component logs are on the server page."
)

DEFAULTS = {
    "server_state_changed": (
        "[Steward] {{ server.name }} is {{ 'DOWN' if event.state == 'down' else 'UP again' }}",
        "{% if event.settled_after_flapping is defined %}"
        "After flapping, {{ server.name }} has been {{ event.state }} for a while now.\n\n"
        "{% endif %}"
        "{% if event.state == 'down' %}"
        "Server {{ server.name }} (id {{ server.id }}) stopped sending heartbeats"
        "{% if event.last_heartbeat_at %}; the last one arrived at {{ event.last_heartbeat_at }}{% endif %}.\n\n"
        + _SERVER_DOWN_ADVICE + "\n"
        "{% else %}"
        "Server {{ server.name }} (id {{ server.id }}) is sending heartbeats again"
        "{% if event.previous_state == 'down' %} after being down{% endif %}.\n\n"
        "Nothing to do; check the server page if it keeps going down.\n"
        "{% endif %}\n\n{{ server_url }}\n",
    ),
    "install_finished": (
        "[Steward] Install on {{ server.name }} {{ event.state | replace('_', ' ') }}",
        "Install task {{ event.task_id }} on {{ server.name }} (id {{ server.id }}) finished: "
        "{{ event.state | replace('_', ' ') }}.\n"
        "{% if event.error %}Error: {{ event.error }}\n\n"
        "What to do: read the task's step log, fix the cause (SSH access, disk space, package mirror) "
        "and start the install again.\n"
        "{% else %}\nThe server's components are installed and verified; it should report heartbeats shortly.\n"
        "{% endif %}\n{{ server_url }}\n",
    ),
    "update_finished": (
        "[Steward] Update on {{ server.name }} {{ event.state | replace('_', ' ') }}",
        "Update task {{ event.task_id }} on {{ server.name }} (id {{ server.id }}) finished: "
        "{{ event.state | replace('_', ' ') }}.\n"
        "{% if event.error %}Error: {{ event.error }}\n\n"
        "What to do: read the task's step log and the diagnostics, then retry the update.\n"
        "{% else %}\nThe new version passed verification; nothing to do.\n{% endif %}\n{{ server_url }}\n",
    ),
    "update_rolled_back": (
        "[Steward] Update of {{ event.component }} on {{ server.name }} rolled back",
        "Updating {{ event.component }} on {{ server.name }} (id {{ server.id }}) to {{ event.failed_version }} "
        "failed verification ({{ event.reason }}); Steward restarted the last stable version "
        "{{ event.restored_version }}.\n\n"
        "What to do: the server runs the old version and serves again; read task {{ event.task_id }}'s step log "
        "before trying {{ event.failed_version }} again.\n\n{{ server_url }}\n",
    ),
    "backup_verified": (
        "[Steward] Backup {{ event.backup_id }} on {{ server.name }} "
        "{{ 'is BAD' if event.error and event.state in (none, 'succeeded') else 'verified' if not event.error "
        "else 'not verified' }}",
        "{% if not event.error %}"
        "Backup {{ event.backup_id }} on backup server {{ server.name }} was restored to a scratch area "
        "and verified.\n\nNothing to do.\n"
        "{% elif event.state in (none, 'succeeded') %}"
        "Verifying backup {{ event.backup_id }} on backup server {{ server.name }} found it bad: {{ event.error }}.\n\n"
        "What to do: do not count on this backup; run a new backup and verify it.\n"
        "{% else %}"
        "Backup {{ event.backup_id }} on backup server {{ server.name }} could not be verified "
        "({{ event.state }}): {{ event.error }}.\n\nWhat to do: verify it again once the cause is fixed.\n"
        "{% endif %}\n{{ server_url }}\n",
    ),
    "backup_failed": (
        "[Steward] Backup on {{ server.name }} {{ 'cancelled' if event.state == 'cancelled' else 'FAILED' }}",
        "{% if event.state == 'cancelled' %}A backup run on backup server {{ server.name }} was stopped"
        "{% else %}A backup run on backup server {{ server.name }} failed{% endif %}"
        "{% if event.error %}: {{ event.error }}{% endif %}.\n\n"
        "What to do: check the backup server's free space and reachability, then run the backup again; "
        "until one succeeds the control plane has no fresh backup.\n\n{{ server_url }}\n",
    ),
    "backup_restored": (
        "[Steward] Restore of backup {{ event.backup_id }} into {{ event.into }} {{ event.state }}",
        "Restoring backup {{ event.backup_id }} from backup server {{ server.name }} into the database "
        "{{ event.into }}: {{ event.state }}{% if event.error %} ({{ event.error }}){% endif %}.\n\n"
        "{% if event.state == 'succeeded' %}The database holds the backup's data.{% else %}"
        "What to do: read task {{ event.task_id }}'s step log, drop what it left in {{ event.into }}, and restore "
        "again.{% endif %}\n\n{{ server_url }}\n",
    ),
    "backup_pruned": (
        "[Steward] Prune on {{ server.name }} {{ event.state }}",
        "Pruning backup server {{ server.name }} by its retention policy: {{ event.state }}"
        "{% if event.error %} ({{ event.error }}){% endif %}.\n"
        "{% if event.state == 'succeeded' %}{{ event.removed | length }} backups removed, {{ event.kept }} kept."
        "{% else %}What to do: read task {{ event.task_id }}'s step log; the backups it had not removed are still "
        "listed.{% endif %}\n\n{{ server_url }}\n",
    ),
    "fleet_silence_detected": (
        "[Steward] {{ event.silent_servers }} of {{ event.servers_up }} servers fell silent at once",
        "Since about {{ event.silent_since }}, {{ event.silent_servers }} of the {{ event.servers_up }} servers "
        "that were up have sent no heartbeat, all from about the same moment. That points at the control plane's "
        "network or the network between it and the servers rather than at each server, so Steward reports it "
        "once and marks none of them down for it.\n\n"
        "What to do: check that the servers can reach the control plane (its gateway, RabbitMQ, firewalls, "
        "DNS). Servers still silent once heartbeats come back are reported one by one.\n\n{{ server_url }}\n",
    ),
    "disk_low": (
        "[Steward] Disk low on {{ server.name }}: {{ event.mountpoint }} {{ '%.1f' % event.free_percent }}% free",
        "{{ event.mountpoint }} on {{ server.name }} (id {{ server.id }}) has only "
        "{{ '%.1f' % event.free_percent }}% free.\n\n"
        "What to do: free space (old logs, unused container images) or grow the volume before services "
        "stop writing.\n\n{{ server_url }}\n",
    ),
    "backup_disk_low": (
        "[Steward] Disk low on backup server {{ event.backup_server_name }}: "
        "{{ '%.1f' % event.free_percent }}% free",
        "The disk that backup server {{ event.backup_server_name }} (id {{ event.backup_server_id }}) stores backups "
        "on has only {{ '%.1f' % event.free_percent }}% free.\n\n"
        "What to do: prune by the retention policy, or grow the volume: a backup that would not fit fails before "
        "it starts.\n\n{{ server_url }}\n",
    ),
    FLAPPING: (
        "[Steward] {{ server.name }} is flapping",
        "Server {{ server.name }} (id {{ server.id }}) changed state {{ event.changes }} times in "
        "{{ event.window_minutes }} minutes; it is now {{ event.state }}.\n\n"
        "Steward holds back its state changes until it has been stable for {{ event.window_minutes }} minutes, "
        "then reports the state it settled in.\n\n"
        "What to do: look for an unstable network link or a service restarting in a loop.\n\n{{ server_url }}\n",
    ),
    DIGEST: (
        "[Steward] {{ count }} events: "
        "{% for type, n in counts.items() %}{{ n }} {{ type | replace('_', ' ') }}{{ ', ' if not loop.last }}"
        "{% endfor %}",
        "{{ count }} events arrived within a few seconds, so they come as one message.\n\n"
        "{% for item in items %}- {{ item.subject }}\n  {{ item.server_url }}\n{% endfor %}",
    ),
}

# Events without a template of their own say what happened plainly.
GENERIC = (
    "[Steward] {{ event_type | replace('_', ' ') }}{% if server.name %}: {{ server.name }}{% endif %}",
    "{{ event_type | replace('_', ' ') | capitalize }}{% if server.name %} for {{ server.name }} "
    "(id {{ server.id }}){% endif %} at {{ event.occurred_at }}.\n\n{{ server_url }}\n",
)


def _sample_server():
    return {"id": 1, "name": "dns-1", "address": "192.0.2.53", "os": "ubuntu", "state": "running"}


def _samples():
    task = dict(server_id=1, server_name="dns-1", task_id="t-1", state="failed", error="verification failed")
    backup = dict(backup_server_id=1, backup_server_name="backup-1", backup_id="b-1", error="disk full",
                  task_id="t-1", state="failed")
    built = {
        "server_created": build_event("server_created", server=_sample_server()),
        "server_updated": build_event("server_updated", server=_sample_server(), changed=["ssh_port"]),
        "server_deleted": build_event("server_deleted", server=_sample_server()),
        "install_finished": build_event("install_finished", **task),
        "update_finished": build_event("update_finished", **task),
        "update_rolled_back": build_event("update_rolled_back", **dict(task, state="rolled_back"), component="dns",
                                          failed_version="3.3.1", restored_version="3.2.6", reason="PVOK missing"),
        "server_state_changed": build_event("server_state_changed", server_id=1, server_name="dns-1",
                                            previous_state="up", state="down",
                                            last_heartbeat_at="2026-01-01T00:00:00+00:00"),
        "disk_low": build_event("disk_low", server_id=1, server_name="dns-1", mountpoint="/", free_percent=4.2),
        "fleet_silence_detected": build_event("fleet_silence_detected", silent_servers=10, servers_up=10,
                                              silent_since="2026-01-01T00:00:00+00:00", server_ids=list(range(1, 11))),
        "backup_finished": build_event("backup_finished", **backup),
        "backup_verified": build_event("backup_verified", **backup),
        "backup_failed": build_event("backup_failed", **backup),
        "backup_restored": build_event("backup_restored", **backup, into="steward_restored"),
        "backup_pruned": build_event("backup_pruned", backup_server_id=1, backup_server_name="backup-1", task_id="t-1",
                                     state="succeeded", error=None, removed=["b-1"], kept=7),
        "backup_disk_low": build_event("backup_disk_low", backup_server_id=1, backup_server_name="backup-1",
                                       free_percent=4.2, free_bytes=420 << 20, low_percent=10.0),
    }
    built[FLAPPING] = dict(built["server_state_changed"], event=FLAPPING, changes=6, window_minutes=10)
    return built


SAMPLES = _samples()


# Where each kind of subject lives in the API. Backup servers belong to the backup
# service; its route must match this when it lands.
MANAGED_SERVERS, BACKUP_SERVERS = "servers", "backup-servers"


def subject_of(event_name, payload):
    """What an event is about, as (id, name, collection); (None, None, None) if it names nothing.

    ``collection`` tells a managed server from a backup server, whose ids are another series.
    """
    if "server" in payload:
        return payload["server"]["id"], payload["server"]["name"], MANAGED_SERVERS
    if "server_id" in payload:
        return payload["server_id"], payload.get("server_name"), MANAGED_SERVERS
    if "backup_server_id" in payload:
        return payload["backup_server_id"], payload.get("backup_server_name"), BACKUP_SERVERS
    return None, None, None


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Templates:
    def __init__(self, session, public_url):
        self.session = session
        self.public_url = public_url.rstrip("/")
        self._overrides = None  # read once per use: a digest renders hundreds of items

    # -- what operators see and change -----------------------------------
    def effective(self):
        overrides = {(t.event_type, t.channel_kind): t for t in self.session.scalars(select(Template))}
        rows = []
        for event_type in TEMPLATE_EVENTS:
            for kind in CHANNEL_KINDS:
                override = overrides.get((event_type, kind))
                if override:
                    rows.append(template_dict(override))
                else:
                    subject, body = DEFAULTS.get(event_type, GENERIC)
                    rows.append({"id": None, "event_type": event_type, "channel_kind": kind, "subject": subject,
                                 "body": body, "overridden": False})
        return rows

    def set(self, data):
        self._check(data["event_type"], data["subject"], data["body"])
        template = self.session.scalar(select(Template).where(
            Template.event_type == data["event_type"], Template.channel_kind == data["channel_kind"]))
        if template is None:
            template = Template(event_type=data["event_type"], channel_kind=data["channel_kind"])
            self.session.add(template)
        template.subject, template.body = data["subject"], data["body"]
        self.session.flush()
        return template

    def delete(self, template_id):
        template = self.session.get(Template, template_id)
        if template is None:
            raise TemplateNotFound(f"no template override {template_id}")
        self.session.delete(template)

    def _check(self, event_type, subject, body):
        try:
            if event_type == DIGEST:
                context = self._digest_context([self.context(name, SAMPLES[name]) for name in
                                                ("server_state_changed", "disk_low")])
            else:
                context = self.context(event_type, SAMPLES[event_type])
            self._render(subject, body, context)
        except Exception as exc:  # noqa: BLE001 - syntax, undefined names, 1/0, a wrong type: each means "does not render"
            raise ValidationFailed("the template does not render", {"template": [f"{type(exc).__name__}: {exc}"]}) \
                from None

    # -- rendering ----------------------------------------------------------
    def context(self, event_type, payload, severity=None):
        server_id, server_name, collection = subject_of(event_type, payload)
        server_url = f"{self.public_url}/api/v2/{collection}/{server_id}" if server_id is not None else self.public_url
        return {"event": payload, "event_type": event_type, "severity": severity,
                "server": {"id": server_id, "name": server_name}, "server_url": server_url,
                "public_url": self.public_url}

    @staticmethod
    def _digest_context(items):
        return {"items": items, "count": len(items), "counts": dict(Counter(i["event_type"] for i in items).most_common())}

    def _override(self, event_type, kind):
        if self._overrides is None:
            self._overrides = {(t.event_type, t.channel_kind): (t.subject, t.body)
                               for t in self.session.scalars(select(Template))}
        return self._overrides.get((event_type, kind))

    @staticmethod
    def _render(subject, body, context):
        # A subject is one line whatever the template does.
        return Rendered(" ".join(compile_template(subject).render(context).split()), compile_template(body).render(context))

    def _render_with_fallback(self, event_type, kind, context):
        default = DEFAULTS.get(event_type, GENERIC)
        override = self._override(event_type, kind)
        if override is not None:
            try:
                return self._render(*override, context)
            except TemplateError:
                # It rendered against the sample when saved; an odd payload must not cost the message.
                pass
        return self._render(*default, context)

    def render_one(self, kind, event_type, payload, severity):
        return self._render_with_fallback(event_type, kind, self.context(event_type, payload, severity))

    def render_digest(self, kind, items):
        """``items``: (event_type, payload, severity) tuples, oldest first."""
        contexts = []
        for event_type, payload, severity in items:
            context = self.context(event_type, payload, severity)
            context["subject"] = self.render_one(kind, event_type, payload, severity).subject
            contexts.append(context)
        return self._render_with_fallback(DIGEST, kind, self._digest_context(contexts))


def template_dict(template):
    return {"id": template.id, "event_type": template.event_type, "channel_kind": template.channel_kind,
            "subject": template.subject, "body": template.body, "overridden": True}
