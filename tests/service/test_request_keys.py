"""RequestKey.answer (shared/idempotency.py), the one way a create answers, against the real database:
it commits the create with its key and answer once, refuses a create that commits on its own, and
lets a create flush under a savepoint (a unique name checked) as the notifier's do."""
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.inventory.models import idempotency_keys
from shared.idempotency import CommittedBeforeAnswer, RequestKey

ADMIN = {"name": "admin"}


def _key(key="key-1"):
    return RequestKey(idempotency_keys, key, "create_thing", "test-secret-key")


def _kept(engine):
    with engine.connect() as connection:
        return connection.execute(text("SELECT key, answer FROM inventory.idempotency_keys")).all()


def test_a_create_that_commits_before_its_answer_is_refused_and_keeps_nothing(engine):
    with Session(engine) as session:
        def create():
            session.execute(text("SELECT 1"))
            session.commit()  # the change would be committed without its answer
            return {"id": 1}

        with pytest.raises(CommittedBeforeAnswer):
            _key().answer(session, ADMIN, {"name": "x"}, create)
        session.rollback()
    assert _kept(engine) == []


def test_a_savepoint_is_not_a_commit_and_a_repeat_gets_the_first_answer(engine):
    with Session(engine) as session:
        def create():
            with session.begin_nested():  # as flush_unique does
                session.execute(text("SELECT 1"))
            return {"id": 7}

        assert _key().answer(session, ADMIN, {"name": "x"}, create) == {"id": 7}
    assert [tuple(row) for row in _kept(engine)] == [("key-1", {"id": 7})]

    def again():
        raise AssertionError("a repeat ran the create again")

    with Session(engine) as session:
        assert _key().answer(session, ADMIN, {"name": "x"}, again) == {"id": 7}
