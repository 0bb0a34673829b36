"""Several replicas and restarts: a task runs for one work message only; a redelivered one takes it over."""
from datetime import timedelta

from sqlalchemy.orm import Session

from services.updater.rollouts import Rollouts
from services.updater.tasks import StepLog, Tasks, utcnow

SERVER = {"id": 7, "name": "dns-7"}


def test_only_the_dispatched_message_or_its_redelivery_claims_a_task(engine):
    with Session(engine) as session:
        tasks = Tasks(session)
        task = tasks.create(SERVER, "dns", None, "alice")
        first = tasks.dispatch(task)
        session.commit()
        duplicate = {"task_id": task.id, "dispatch_id": "f" * 32}  # e.g. the sweep re-sent it meanwhile

        assert tasks.claim(task.id, first["dispatch_id"]).state == "running"
        assert tasks.claim(task.id, duplicate["dispatch_id"]) is None  # another replica: hands off
        # The same message again means its consumer died (RabbitMQ redelivers only then): take it over.
        assert tasks.claim(task.id, first["dispatch_id"]) is not None

        StepLog(session, task, lambda *a, **k: None).finish("succeeded")
        assert tasks.claim(task.id, first["dispatch_id"]) is None  # finished tasks never run again


def test_queued_tasks_whose_message_was_lost_are_sent_again(engine):
    with Session(engine) as session:
        tasks = Tasks(session)
        old = tasks.create(SERVER, "dns", None, "alice")
        tasks.dispatch(old)
        session.commit()
        assert tasks.redispatch_stale(utcnow() - timedelta(minutes=1)) == []
        again = tasks.redispatch_stale(utcnow() + timedelta(seconds=1))
        assert [m["task_id"] for m in again] == [old.id] and len(again[0]["dispatch_id"]) == 32
        session.commit()


def test_advancing_a_rollout_twice_starts_each_wave_once(engine):
    with Session(engine) as session:
        tasks = Tasks(session)
        rollouts = Rollouts(session, tasks)
        servers = [{"id": i, "name": f"dns-{i}"} for i in range(1, 5)]
        rollout = rollouts.create({"canary_size": 1, "batch_size": 2, "max_failures": 1, "component": "dns"},
                                  servers, "alice")
        session.commit()
        first = rollouts.advance(rollout.id)
        session.commit()
        assert len(first) == 1 and rollouts.advance(rollout.id) == []  # the canary still runs
        session.commit()
        canary = tasks.get(first[0])
        canary.state, canary.outcome = "succeeded", {"dns": {"outcome": "updated"}}
        session.commit()
        second = rollouts.advance(rollout.id)
        session.commit()
        assert len(second) == 2 and rollouts.advance(rollout.id) == []
        for task_id in second:
            tasks.get(task_id).state = "rolled_back"
        session.commit()
        assert rollouts.advance(rollout.id) == []
        session.commit()
        paused = rollouts.get(rollout.id)
        assert paused.state == "paused" and [s.state for s in paused.servers] == [
            "succeeded", "rolled_back", "rolled_back", "pending"]
