"""The gateway's token cache keeps an agent token across heartbeats (30 s apart) and a person's token only
briefly, so that a fleet's heartbeats do not each ask inventory while a revoked API token stops soon."""
from gateway.middleware import PrincipalCache

AGENT = {"user_id": None, "name": "agent:7", "role": "agent", "groups": [], "scope": "agent", "server_id": 7}
PERSON = {"user_id": 1, "name": "ops", "role": "operator", "groups": [], "scope": "full", "server_id": None}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_an_agent_token_outlives_a_heartbeat_interval_and_a_person_token_does_not():
    clock = Clock()
    cache = PrincipalCache(10, clock=clock, agent_ttl_seconds=300)
    cache.put("agent", AGENT)
    cache.put("person", PERSON)
    clock.now = 31.0  # the agent's next heartbeat
    assert cache.get("agent") == AGENT and cache.get("person") is None
    clock.now = 301.0
    assert cache.get("agent") is None


def test_without_an_agent_time_agents_are_kept_as_long_as_anyone():
    clock = Clock()
    cache = PrincipalCache(10, clock=clock)
    cache.put("agent", AGENT)
    clock.now = 11.0
    assert cache.get("agent") is None


def test_a_fleet_of_agents_fits_without_emptying_the_cache():
    cache = PrincipalCache(10, agent_ttl_seconds=300)
    for n in range(100_000):
        cache.put(f"agent-{n}", dict(AGENT, server_id=n))
    assert cache.get("agent-0")["server_id"] == 0
