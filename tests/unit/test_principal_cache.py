"""The gateway's token cache keeps an agent token across heartbeats (30 s apart) only while its revocation feed
consumes, a person's token only briefly, and drops what a revocation names at once."""
from gateway.auth_cache import PrincipalCache

AGENT = {"user_id": None, "name": "agent:7", "role": "agent", "groups": [], "scope": "agent", "server_id": 7}
PERSON = {"user_id": 1, "name": "ops", "role": "operator", "groups": [], "scope": "full", "server_id": None}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def listening_cache(clock, agent_ttl_seconds=300):
    cache = PrincipalCache(10, clock=clock, agent_ttl_seconds=agent_ttl_seconds)
    cache.feed_consuming()
    return cache


def test_an_agent_token_outlives_a_heartbeat_interval_and_a_person_token_does_not():
    clock = Clock()
    cache = listening_cache(clock)
    cache.put("agent", AGENT, cache.ticket())
    cache.put("person", PERSON, cache.ticket())
    clock.now = 31.0  # the agent's next heartbeat
    assert cache.get("agent") == AGENT and cache.get("person") is None
    clock.now = 301.0
    assert cache.get("agent") is None


def test_without_an_agent_time_agents_are_kept_as_long_as_anyone():
    clock = Clock()
    cache = listening_cache(clock, agent_ttl_seconds=None)
    cache.put("agent", AGENT, cache.ticket())
    clock.now = 11.0
    assert cache.get("agent") is None


def test_a_revocation_drops_that_servers_agent_and_that_users_tokens_only():
    cache = listening_cache(Clock())
    for key, principal in {"agent-7": AGENT, "agent-8": dict(AGENT, server_id=8), "ops": PERSON,
                           "other": dict(PERSON, user_id=2), "ops-agent": dict(AGENT, server_id=1)}.items():
        cache.put(key, principal, cache.ticket())
    assert cache.revoke(server_ids=[7], user_ids=[1]) == 2  # user 1's tokens, not the agent of server 1
    assert cache.get("agent-7") is None and cache.get("ops") is None
    assert cache.get("agent-8") and cache.get("other") and cache.get("ops-agent")
    assert cache.revoke(everyone=True) == 3 and cache.get("agent-8") is None


def test_an_answer_that_a_revocation_overtook_is_not_kept():
    cache = listening_cache(Clock())
    ticket = cache.ticket()  # inventory is asked; meanwhile the token is revoked and the event arrives
    cache.revoke(server_ids=[7])
    cache.put("agent", AGENT, ticket)
    assert cache.get("agent") is None


def test_while_the_feed_is_away_agent_tokens_are_trusted_only_the_short_time():
    clock = Clock()
    cache = PrincipalCache(10, clock=clock, agent_ttl_seconds=300)  # the feed has not consumed yet
    cache.put("before", AGENT, cache.ticket())
    cache.feed_consuming()
    cache.put("during", AGENT, cache.ticket())
    ticket = cache.ticket()
    cache.feed_lost()  # a revocation sent now is not heard
    cache.put("asked across the loss", AGENT, ticket)
    clock.now = 11.0
    assert [cache.get(k) for k in ("before", "during", "asked across the loss")] == [None, None, None]

    cache.feed_consuming()  # back: what it missed is unknown, so what was verified before stays short
    cache.put("after", AGENT, cache.ticket())
    clock.now = 31.0
    assert cache.get("after") == AGENT


def test_a_fleet_of_agents_fits_without_emptying_the_cache():
    cache = listening_cache(Clock())
    for n in range(100_000):
        cache.put(f"agent-{n}", dict(AGENT, server_id=n), cache.ticket())
    assert cache.get("agent-0")["server_id"] == 0
