"""The heartbeat: every interval, POST /api/v2/monitoring/heartbeat with the
agent token and the versions of the running components. It runs as its own
service (pv_heartbeat.service), so it goes on while components or Docker are down."""
import json
import logging
import os
import urllib.error
import urllib.request

from agent import AGENT_VERSION
from agent.messages import HEARTBEAT, envelope, utc_now
from agent.switches import Switches
from agent.tls import client_context

log = logging.getLogger("agent.heartbeat")

HEARTBEAT_PATH = "/api/v2/monitoring/heartbeat"


def running_versions(components_file):
    """Component -> version from the file the component start scripts keep (stop scripts remove their entry)."""
    try:
        with open(components_file) as handle:
            versions = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("cannot read %s: %s", components_file, error)
        return {}
    if not isinstance(versions, dict):
        log.warning("%s must map component names to versions", components_file)
        return {}
    return {str(name): str(version) for name, version in versions.items() if isinstance(version, (str, int, float))}


class Heartbeat:
    def __init__(self, config, sequence, clock=utc_now, urlopen=urllib.request.urlopen):
        self.config = config
        self.sequence = sequence  # anything with next_seq(kind), persisted across restarts
        self.clock = clock
        self.urlopen = urlopen
        self.url = config.monitoring_url + HEARTBEAT_PATH
        self.context = client_context(config.verify_ca) if self.url.startswith("https:") else None
        self.switches = Switches(os.path.join(config.spool_dir, "collect.json"))

    def message(self):
        data = {"agent_version": AGENT_VERSION, "versions": running_versions(self.config.components_file)}
        return envelope(HEARTBEAT, self.config.server_id, self.sequence.next_seq(HEARTBEAT), self.clock(), data)

    def send_once(self):
        """POST one heartbeat; returns the HTTP status (202 once the control plane took it)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(self.message()).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.config.agent_token},
        )
        try:
            with self.urlopen(request, timeout=self.config.http_timeout, context=self.context) as response:
                self._follow(response.read(64 * 1024))
                return response.status
        except urllib.error.HTTPError as error:
            log.warning("heartbeat refused: HTTP %d %s", error.code, error.read(500).decode("utf-8", "replace"))
            return error.code

    def _follow(self, body):
        """The answer says which collectors the admin settings want on: the statistics process reads it."""
        try:
            collect = json.loads(body.decode("utf-8")).get("collect")
        except (ValueError, AttributeError):
            return
        if isinstance(collect, dict):
            self.switches.save(collect)

    def run(self, stopping):
        while not stopping.is_set():
            started = self.clock()
            try:
                self.send_once()
            except (urllib.error.URLError, OSError) as error:
                log.warning("heartbeat not delivered: %s", getattr(error, "reason", error))
            elapsed = (self.clock() - started).total_seconds()
            stopping.wait(max(0.0, self.config.heartbeat_interval - elapsed))
