"""Which collectors run: the heartbeat's answer carries the admin settings' system_monitoring and
dns_monitoring, the heartbeat process keeps them in a small file, and the statistics process reads it
before each reading, so a toggle acts at the next heartbeat without a reinstall or restart."""
import json
import logging
import os

log = logging.getLogger("agent.switches")

KINDS = ("system", "dns")


class Switches:
    def __init__(self, path):
        self.path = path
        self._seen = None  # (mtime_ns, size) of the file last read
        self._state = {kind: True for kind in KINDS}  # no answer yet: collect, as before there were switches

    def save(self, collect):
        state = {kind: bool(collect.get(kind, True)) for kind in KINDS}
        if os.path.exists(self.path) and state == self.read():
            return
        temporary = self.path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.path)
        log.info("collectors now: %s", ", ".join("%s %s" % (k, "on" if v else "off") for k, v in sorted(state.items())))

    def read(self):
        try:
            stat = os.stat(self.path)
        except OSError:
            return dict(self._state)
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            try:
                with open(self.path) as handle:
                    loaded = json.load(handle)
                self._state = {kind: bool(loaded.get(kind, True)) for kind in KINDS}
                self._seen = (stat.st_mtime_ns, stat.st_size)
            except (OSError, ValueError, AttributeError) as error:
                log.warning("cannot read %s: %s", self.path, error)
        return dict(self._state)

    def on(self, kind):
        return self.read()[kind]
