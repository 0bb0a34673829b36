"""Several replicas: an update task is claimed once, one update per server and component at a time,
and a rollout advanced twice starts each wave once."""
import eventlet
from sqlalchemy.orm import Session, sessionmaker

from services.updater.models import Task, TaskStep
from services.updater.rollouts import Rollouts
from services.updater.tasks import KIND, overlapping
from shared.errors import OperationInProgress
from shared.tasks import TaskStore

SERVER = {"id": 7, "name": "dns-7"}


def _store(engine):
    return TaskStore(sessionmaker(bind=engine, expire_on_commit=False), Task, TaskStep)


def _create(store, server, component, requested_by="alice", session=None):
    return store.create(KIND, server["id"], server["name"], {}, requested_by, session=session,
                        overlaps=overlapping(Task, component), component=component, target_version=None, outcome={})


def test_two_replicas_claim_an_update_task_once_and_a_finished_one_never(engine):
    store = _store(engine)
    task = _create(store, SERVER, "dns")
    claims = [eventlet.spawn(store.claim, holder, 1, (KIND,)) for holder in ("replica-a", "replica-b")]
    assert sorted(len(c.wait()) for c in claims) == [0, 1]
    assert store.finish(task["id"], "succeeded", holder=store.row(task["id"]).claimed_by)
    assert not store.finish(task["id"], "failed")  # ended once: a second end changes nothing
    assert store.claim("replica-c", 1, (KIND,)) == [] and store.get(task["id"])[0]["state"] == "succeeded"


def test_advancing_a_rollout_twice_starts_each_wave_once(engine):
    store = _store(engine)
    with Session(engine) as session:
        rollouts = Rollouts(session, store)
        servers = [{"id": i, "name": f"dns-{i}"} for i in range(1, 5)]
        rollout = rollouts.create({"canary_size": 1, "batch_size": 2, "max_failures": 1, "component": "dns"},
                                  servers, "alice")
        session.commit()
        first = rollouts.advance(rollout.id)
        session.commit()
        assert len(first) == 1 and rollouts.advance(rollout.id) == []  # the canary still runs
        session.commit()
        canary = session.get(Task, first[0])
        canary.state, canary.outcome = "succeeded", {"dns": {"outcome": "updated"}}
        session.commit()
        second = rollouts.advance(rollout.id)
        session.commit()
        assert len(second) == 2 and rollouts.advance(rollout.id) == []
        for task_id in second:
            session.get(Task, task_id).state = "rolled_back"
        session.commit()
        assert rollouts.advance(rollout.id) == []
        session.commit()
        paused = rollouts.get(rollout.id)
        assert paused.state == "paused" and [s.state for s in paused.servers] == [
            "succeeded", "rolled_back", "rolled_back", "pending"]


def _create_or_refusal(engine, component):
    try:
        return _create(_store(engine), SERVER, component)["id"]
    except OperationInProgress as refused:
        return refused


def test_one_update_per_server_and_component_even_from_two_replicas(engine):
    outcomes = [eventlet.spawn(_create_or_refusal, engine, "dns") for _ in range(2)]
    first, second = sorted((o.wait() for o in outcomes), key=lambda r: isinstance(r, OperationInProgress))
    assert isinstance(second, OperationInProgress), "two updates of dns on one server were both queued"
    assert second.details == {"task_id": [first]} and first in second.message and second.http_status == 409
    # Every component overlaps dns; another component does not.
    assert isinstance(_create_or_refusal(engine, None), OperationInProgress)
    dhcp = _create_or_refusal(engine, "dhcp")
    assert isinstance(dhcp, str)
    with Session(engine) as session:
        for task_id in (first, dhcp):
            session.get(Task, task_id).state = "rolled_back"
        session.commit()
    assert isinstance(_create_or_refusal(engine, None), str)  # free once they ended


def test_a_rollout_waits_behind_an_update_already_running_on_its_server(engine):
    store = _store(engine)
    with Session(engine) as session:
        rollouts = Rollouts(session, store)
        busy = _create(store, SERVER, "dns", "bob", session=session)
        rollout = rollouts.create({"canary_size": 0, "batch_size": 2, "max_failures": 1, "component": "dns"},
                                  [SERVER, {"id": 8, "name": "dns-8"}], "alice")
        session.commit()
        started = rollouts.advance(rollout.id)
        session.commit()
        waiting = rollouts.get(rollout.id).servers[0]
        assert len(started) == 1 and waiting.state == "pending" and busy.id in waiting.message
        session.get(Task, started[0]).state = "succeeded"
        session.get(Task, busy.id).state = "succeeded"
        session.commit()
        again = rollouts.advance(rollout.id)
        session.commit()
        assert len(again) == 1 and session.get(Task, again[0]).server_id == SERVER["id"]
        assert rollouts.get(rollout.id).servers[0].message is None


def test_a_paused_rollout_still_learns_how_the_rest_of_its_wave_ended(engine):
    store = _store(engine)
    with Session(engine) as session:
        rollouts = Rollouts(session, store)
        servers = [{"id": i, "name": f"dns-{i}"} for i in range(1, 4)]
        rollout = rollouts.create({"canary_size": 0, "batch_size": 2, "max_failures": 1, "component": "dns"},
                                  servers, "alice")
        session.commit()
        first, second = rollouts.advance(rollout.id)
        session.commit()
        session.get(Task, first).state = "rolled_back"  # the broken host fails first ...
        session.commit()
        assert rollouts.advance(rollout.id) == [] and rollouts.get(rollout.id).state == "paused"
        session.commit()
        done = session.get(Task, second)  # ... while the other one of its wave still updates, then ends
        done.state, done.outcome = "succeeded", {"dns": {"outcome": "updated"}}
        session.commit()
        assert rollouts.advance(rollout.id) == []
        session.commit()
        assert [s.state for s in rollouts.get(rollout.id).servers] == ["rolled_back", "succeeded", "pending"]
