"""The token cache as production runs it (the rest of the suite runs with it off): a revoked token
keeps working from the cache for at most STEWARD_AUTH_CACHE_SECONDS, then never again."""
import time

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.routes import PREFIX
from shared.config import load_settings
from tests.monitoring.helpers import child_env

CACHE_SECONDS = 2.0


@pytest.fixture
def cached(settings, rpc, inventory):
    """The real app on this run's database and vhost, its settings read from the environment."""
    return testing.TestClient(create_app(load_settings(environ=dict(
        child_env(settings), STEWARD_AUTH_CACHE_SECONDS=str(CACHE_SECONDS))), rpc=rpc))


def test_a_revoked_token_works_from_the_cache_at_most_for_its_time(cached, auth):
    for _ in range(5):  # a machine too slow to ask again within the cache's time tries with a new token
        created = cached.simulate_post(f"{PREFIX}/tokens", json={"name": "revoked-soon"}, headers=auth).json
        token = {"Authorization": f"Bearer {created['token']}"}
        asked = time.monotonic()
        assert cached.simulate_get(f"{PREFIX}/tokens", headers=token).status_code == 200  # verified, cached
        cached_until = time.monotonic() + CACHE_SECONDS  # the entry was made before this moment
        assert cached.simulate_delete(f"{PREFIX}/tokens/{created['id']}", headers=auth).status_code == 204
        sent = time.monotonic()
        answer = cached.simulate_get(f"{PREFIX}/tokens", headers=token)
        if sent < asked + CACHE_SECONDS:  # the entry was certainly alive: only the cache can let it in
            assert answer.status_code == 200, "refused within the cache's time: the cache is not on"
            break
    else:
        pytest.fail("five times, the next request came after the cache's time: the machine is too slow for this test")

    # Once the cache's time has passed, the revoked token is refused, every time.
    time.sleep(max(0.0, cached_until - time.monotonic()))
    refused = cached.simulate_get(f"{PREFIX}/tokens", headers=token)
    assert refused.status_code == 401 and refused.json["error"] == "not_authenticated"
    assert cached.simulate_get(f"{PREFIX}/servers", headers=token).status_code == 401
