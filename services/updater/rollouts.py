"""Fleet rollouts: a canary wave, then batches, pausing at failures; resume and cancel.

All state is in the database. ``advance`` is the only thing that moves a
rollout on: it locks the rollout's row, reads its servers' task outcomes,
and either pauses, starts the next wave, or finishes. It is idempotent, so a
message delivered twice, a periodic sweep and a restarted replica all do no
harm; the caller enqueues the returned tasks after the commit.
"""
from sqlalchemy import select

from services.updater.models import Rollout, RolloutServer, Task
from services.updater.tasks import KIND, overlapping
from shared.errors import Conflict, OperationInProgress, RolloutNotFound

FAILED = ("failed", "rolled_back")


def rollout_dict(rollout):
    counts = {}
    for server in rollout.servers:
        counts[server.state] = counts.get(server.state, 0) + 1
    return {
        "id": rollout.id, "state": rollout.state, "component": rollout.component,
        "target_version": rollout.target_version, "canary_size": rollout.canary_size,
        "batch_size": rollout.batch_size, "max_failures": rollout.max_failures, "current_wave": rollout.current_wave,
        "paused_reason": rollout.paused_reason, "counts": counts, "created_by": rollout.created_by,
        "created_at": rollout.created_at, "updated_at": rollout.updated_at,
        "servers": [
            {"server_id": s.server_id, "server_name": s.server_name, "position": s.position, "wave": s.wave,
             "state": s.state, "task_id": s.task_id, "message": s.message}
            for s in rollout.servers
        ],
    }


def waves(count, canary_size, batch_size):
    """The wave of each position: the canary wave first (if any), then batches."""
    result = []
    for position in range(count):
        if position < canary_size:
            result.append(0)
        else:
            result.append((1 if canary_size else 0) + (position - canary_size) // batch_size)
    return result


def server_outcome(task):
    """What a finished update task means for the rollout (None while it runs)."""
    if task.state in ("queued", "running"):
        return None
    if task.state == "succeeded":
        updated = any(o.get("outcome") == "updated" for o in (task.outcome or {}).values())
        return "succeeded" if updated else "skipped"
    return task.state  # failed or rolled_back


class Rollouts:
    def __init__(self, session, store):
        self.session = session
        self.store = store  # the updater's shared/tasks.py TaskStore

    def create(self, data, servers, created_by):
        if not servers:
            raise Conflict("no servers match this rollout", {"_schema": ["the selection matches no server"]})
        rollout = Rollout(state="running", component=data.get("component"), target_version=data.get("version"),
                          canary_size=data["canary_size"], batch_size=data["batch_size"],
                          max_failures=data["max_failures"], created_by=created_by)
        for position, (server, wave) in enumerate(
                zip(servers, waves(len(servers), data["canary_size"], data["batch_size"]))):
            rollout.servers.append(RolloutServer(server_id=server["id"], server_name=server["name"],
                                                 position=position, wave=wave, state="pending"))
        self.session.add(rollout)
        self.session.flush()
        return rollout

    def get(self, rollout_id, lock=False):
        query = select(Rollout).where(Rollout.id == rollout_id)
        if lock:
            query = query.with_for_update()
        rollout = self.session.scalars(query).one_or_none()
        if rollout is None:
            raise RolloutNotFound(f"no rollout {rollout_id}")
        return rollout

    def list(self, limit=50):
        return self.session.scalars(select(Rollout).order_by(Rollout.id.desc()).limit(limit)).all()

    def active_ids(self):
        return self.session.scalars(select(Rollout.id).where(Rollout.state == "running")).all()

    def _collect(self, rollout):
        """Copy finished tasks' outcomes onto the rollout's servers."""
        running = {s.task_id: s for s in rollout.servers if s.state == "running" and s.task_id}
        if not running:
            return
        for task in self.session.scalars(select(Task).where(Task.id.in_(running))):
            outcome = server_outcome(task)
            if outcome:
                server = running[task.id]
                server.state = outcome
                server.message = task.error

    def advance(self, rollout_id):
        """Move the rollout on as far as it can go now; returns the tasks to enqueue."""
        rollout = self.get(rollout_id, lock=True)
        # A paused or cancelled rollout still learns how its servers that were updating ended: else one that
        # paused while another server of its wave ran shows that server "running" for ever.
        self._collect(rollout)
        if rollout.state != "running":
            return []
        failed = [s for s in rollout.servers if s.state in FAILED]
        if len(failed) - rollout.failures_before_resume >= rollout.max_failures:
            rollout.state = "paused"
            names = ", ".join(s.server_name for s in failed[rollout.failures_before_resume:])
            rollout.paused_reason = f"paused after {len(failed) - rollout.failures_before_resume} failure(s): {names}"
            return []
        if any(s.state == "running" for s in rollout.servers):
            return []
        pending = [s for s in rollout.servers if s.state == "pending"]
        if not pending:
            rollout.state = "succeeded"
            return []
        wave = min(s.wave for s in pending)
        started = []
        for server in (s for s in pending if s.wave == wave):
            try:
                task = self.store.create(KIND, server.server_id, server.server_name, {}, rollout.created_by,
                                         session=self.session, overlaps=overlapping(Task, rollout.component),
                                         component=rollout.component, target_version=rollout.target_version,
                                         rollout_id=rollout.id, outcome={})
            except OperationInProgress as busy:  # queued behind it: the next advance (a sweep at the latest) tries again
                server.message = f"waiting: {busy.message}"
                continue
            server.state, server.task_id, server.message = "running", task.id, None
            started.append(task.id)
        rollout.current_wave = wave
        return started

    def resume(self, rollout_id):
        rollout = self.get(rollout_id, lock=True)
        if rollout.state != "paused":
            raise Conflict(f"rollout {rollout_id} is {rollout.state}, not paused")
        rollout.state = "running"
        rollout.paused_reason = None
        rollout.failures_before_resume = sum(1 for s in rollout.servers if s.state in FAILED)
        return rollout

    def cancel(self, rollout_id):
        rollout = self.get(rollout_id, lock=True)
        if rollout.state not in ("running", "paused"):
            raise Conflict(f"rollout {rollout_id} is already {rollout.state}")
        rollout.state = "cancelled"
        for server in rollout.servers:
            if server.state == "pending":
                server.state = "cancelled"  # servers already updating finish their task
        return rollout
