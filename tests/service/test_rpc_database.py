"""A service whose database refuses answers its callers 503, to try again, and says nothing of the database
(shared/dependencies.Rpc)."""
import pytest
from sqlalchemy.orm import declarative_base

from shared.db import ping
from shared.dependencies import DatabaseSession, rpc
from shared.errors import ServiceUnavailable
from tests.notifier.conftest import free_port


class DatabaseDownService:
    name = "database_down_probe"
    db = DatabaseSession(declarative_base())

    @rpc
    def health(self):
        return ping(self.db)


def test_a_database_that_refuses_is_a_503_not_an_internal_error(start_service, rpc):
    nobody = free_port()  # nothing listens there: every connection is refused
    start_service(DatabaseDownService, {"DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:{nobody}/steward"})
    with pytest.raises(ServiceUnavailable) as refused:
        rpc.call("database_down_probe", "health")
    assert refused.value.message == "the database is not available now; try again"
    assert str(nobody) not in str(refused.value.details)
