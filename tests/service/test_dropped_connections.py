"""shared/db.py ``once_more_if_dropped``: work whose database connection is terminated under it, after the
pool's pre-ping said it was alive, runs once more on a new one (task steps and the events a task emits use it);
any other database error is raised at once. Real PostgreSQL, real ``pg_terminate_backend``."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import make_engine, once_more_if_dropped


@pytest.fixture
def engines(settings):
    work, admin = make_engine(settings.database_url, pool_size=1), make_engine(settings.database_url, pool_size=1)
    yield work, admin
    work.dispose()
    admin.dispose()


def _dropped_once(engines, attempts):
    """Work that reads its backend, has it terminated the first time (past the pre-ping), then queries."""
    work_engine, admin = engines

    def work():
        with work_engine.begin() as connection:
            attempts.append(connection.execute(text("SELECT pg_backend_pid()")).scalar())
            if len(attempts) == 1:
                with admin.begin() as other:
                    other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": attempts[0]})
            return connection.execute(text("SELECT 42")).scalar()
    return work


def test_work_whose_connection_is_terminated_under_it_runs_once_more_on_a_new_one(engines):
    attempts = []
    assert once_more_if_dropped(_dropped_once(engines, attempts)) == 42
    assert len(attempts) == 2 and attempts[0] != attempts[1]


def test_without_it_the_same_work_fails(engines):
    """The race is real: the pre-ping passed, and the connection died before the next statement."""
    with pytest.raises(DBAPIError) as caught:
        _dropped_once(engines, [])()
    assert caught.value.connection_invalidated


def test_any_other_database_error_is_raised_at_once(engines):
    attempts = []

    def work():
        attempts.append(1)
        with engines[0].begin() as connection:
            connection.execute(text("SELECT 1 / 0"))
    with pytest.raises(DBAPIError, match="division by zero"):
        once_more_if_dropped(work)
    assert attempts == [1]
