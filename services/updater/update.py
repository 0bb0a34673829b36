"""One update task on one server, component by component:

1. stop the running instance;
2. check for a newer version (or the requested one); if none, start the same
   version again and go on to the next component;
3. transfer and install the new version;
4. start it and verify it for real (DNS answers PVOK, DHCP leases);
5. if that fails, put back the complete state kept when the last stable
   version was stopped (its whole configuration directory, so whatever the
   new release added is gone too) and start it again; the task ends
   ``rolled_back`` with the reason.

The last stable version of each component is kept per server, and inventory
learns the running version after every start.
"""
import logging

from sqlalchemy.dialects.postgresql import insert

from services.updater.models import LastStable
from services.updater.exceptions import RemoteFailed
from services.updater.versions import is_newer
from shared.components import INSTALLABLE
from shared.errors import StewardError

log = logging.getLogger("updater")
STEPS_PER_COMPONENT = 5  # stop, check, install, start, verify (a rollback adds one)


class ComponentFailed(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Update:
    def __init__(self, session, steps, catalog, mode, inventory, host):
        self.session = session
        self.steps = steps  # tasks.StepLog of the claimed task
        self.task = steps.task
        self.catalog = catalog
        self.mode = mode
        self.inventory = inventory
        self.host = host  # remote.ComponentHost

    def components(self, server):
        if self.task.component:
            return [self.task.component]
        return [c["name"] for c in server["components"] if c["state"] == "running" and c["name"] in INSTALLABLE]

    def run(self, server):
        running = {c["name"]: c["version"] for c in server["components"] if c["state"] == "running"}
        components = self.components(server)
        self.steps.plan(STEPS_PER_COMPONENT * len(components))
        outcome, rolled_back, failed = {}, [], []
        for component in components:
            self.steps.cancel_point()  # between components: each one left running (updated or as it was)
            current = running.get(component) or self.last_stable(component)
            result = self.update_component(component, current)
            outcome[component] = result
            self.steps.record(dict(outcome))
            if result["outcome"] == "rolled_back":
                rolled_back.append((component, result))
            elif result["outcome"] == "failed":
                failed.append((component, result))
        if failed:
            reasons = "; ".join(f"{c}: {r['reason']}" for c, r in failed)
            state, error = "failed", reasons
        elif rolled_back:
            reasons = "; ".join(f"{c} {r['to']} rolled back to {r['from']}: {r['reason']}" for c, r in rolled_back)
            state, error = "rolled_back", reasons
        else:
            state, error = "succeeded", None
        fields = {"server_id": self.task.server_id, "server_name": self.task.server_name, "task_id": self.task.id,
                  "state": state, "error": error}
        self.steps.finish(state, error, [
            ("update_rolled_back", dict(fields, component=component, failed_version=result["to"],
                                        restored_version=result["from"] or "", reason=result["reason"]))
            for component, result in rolled_back] + [("update_finished", fields)])
        return state

    # -- one component -------------------------------------------------------------

    def _step(self, name, action):
        step = self.steps.begin(name)
        try:
            output = action()
        except RemoteFailed as exc:
            self.steps.end(step, False, exc.output + f"\n{exc}")
            raise ComponentFailed(f"{name} failed: {_last_line(exc.output) or exc}") from None
        except StewardError as exc:
            self.steps.end(step, False, exc.message)
            raise ComponentFailed(f"{name} failed: {exc.message}") from None
        self.steps.end(step, True, output or "")
        return output

    def update_component(self, component, current):
        try:
            self._step(f"stop {component}", lambda: self.host.stop(component))
        except ComponentFailed as exc:
            return {"outcome": "failed", "from": current, "to": None, "reason": exc.reason}

        decision = {}

        def check():
            decision["target"], message = self._target(component, current)
            return message

        try:
            self._step(f"check {component}", check)
        except ComponentFailed as exc:  # e.g. the registry did not answer: run what ran before
            result = self._restart_current(component, current)
            return dict(result, outcome="failed", reason=exc.reason) if result["outcome"] != "failed" else result
        target = decision["target"]
        if target is None:
            return self._restart_current(component, current)

        try:
            self._step(f"install {component} {target}", lambda: self._install(component, target))
        except ComponentFailed as exc:
            return self._restore(component, current, target, exc.reason)

        try:
            self._step(f"start {component} {target}", lambda: self.host.start(component, target))
            self._step(f"verify {component} {target}", lambda: self.host.verify(component))
        except ComponentFailed as exc:
            return self._restore(component, current, target, exc.reason)

        self._record(component, target)
        return {"outcome": "updated", "from": current, "to": target, "reason": None}

    def _install(self, component, version):
        image = self.catalog.image(self.mode, component, version)  # internet mode: fetched from the registry
        return self.host.install(self.catalog.path_of(image), component, version, image.sha256)

    def _target(self, component, current):
        """(version to install or None, what the step log says)."""
        wanted = self.task.target_version or self.catalog.newest_version(self.mode, component)
        if wanted is None:
            return None, f"no {component} version in the catalog"
        if self.task.target_version and wanted != current:
            # An operator may also go back to an older version on purpose.
            return wanted, f"{component} {current} -> {wanted} (requested)"
        if not is_newer(wanted, current):
            return None, f"no newer {component} version than {current} (newest: {wanted})"
        return wanted, f"{component} {current} -> {wanted}"

    def _restart_current(self, component, current):
        self.steps.plan(1)
        try:
            self._step(f"start {component} {current}", lambda: self.host.start(component, current))
        except ComponentFailed as exc:
            self.inventory.set_component_state(self.task.server_id, component, "stopped", current)
            return {"outcome": "failed", "from": current, "to": current, "reason": exc.reason}
        self._record(component, current)
        return {"outcome": "up_to_date", "from": current, "to": current, "reason": None}

    def _restore(self, component, previous, failed_version, reason):
        """Start the version that ran before (the last stable one) again and check it."""
        self.steps.plan(1)
        if not previous:
            self.inventory.set_component_state(self.task.server_id, component, "stopped", None)
            return {"outcome": "failed", "from": None, "to": failed_version,
                    "reason": f"{reason}; no earlier version to go back to"}
        try:
            self._step(f"rollback {component} to {previous}", lambda: self._start_and_verify(component, previous))
        except ComponentFailed as exc:
            self.inventory.set_component_state(self.task.server_id, component, "stopped", previous)
            return {"outcome": "failed", "from": previous, "to": failed_version,
                    "reason": f"{reason}; the rollback to {previous} failed too: {exc.reason}"}
        self._record(component, previous)
        return {"outcome": "rolled_back", "from": previous, "to": failed_version, "reason": reason}

    def _start_and_verify(self, component, version):
        return self.host.rollback(component, version) + self.host.verify(component)

    def _record(self, component, version):
        self.session.execute(
            insert(LastStable)
            .values(server_id=self.task.server_id, component=component, version=version)
            .on_conflict_do_update(index_elements=["server_id", "component"], set_={"version": version})
        )
        self.session.commit()
        self.inventory.set_component_state(self.task.server_id, component, "running", version)

    def last_stable(self, component):
        row = self.session.get(LastStable, (self.task.server_id, component))
        return row.version if row else None


def _last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
