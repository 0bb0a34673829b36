"""The gateway's token cache keeps an agent token across heartbeats (30 s apart) only while its revocation feed
consumes, a person's token only briefly, and drops what a revocation names at once."""
from gateway.auth_cache import PrincipalCache
from shared.authz import agent_principal

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


def test_a_load_of_the_agent_tokens_lets_each_in_long_and_drops_agents_no_longer_listed():
    clock = Clock()
    cache = listening_cache(clock)
    cache.put("person", PERSON, cache.ticket())
    cache.put("gone", AGENT, cache.ticket())  # its token was deleted since
    assert cache.load_agents([("a1", 1), ("a2", 2)], cache.ticket())
    clock.now = 299.0
    assert cache.get("a1") == agent_principal(1) and cache.get("a2")["server_id"] == 2
    assert cache.get("gone") is None
    clock.now = 9.0
    assert cache.get("person") == PERSON


def test_a_load_that_a_revocation_or_a_lost_feed_overtook_is_not_kept():
    cache = listening_cache(Clock())
    ticket = cache.ticket()  # the tokens are read; meanwhile one is revoked and the event arrives
    cache.revoke(server_ids=[1])
    assert not cache.load_agents([("a1", 1)], ticket) and cache.get("a1") is None
    ticket = cache.ticket()
    cache.feed_lost()
    cache.feed_consuming()
    assert not cache.load_agents([("a1", 1)], ticket) and cache.get("a1") is None
    assert cache.load_agents([("a1", 1)], cache.ticket())


def test_a_load_while_the_feed_is_away_is_not_kept_and_one_too_big_is_not_either():
    away = PrincipalCache(10, clock=Clock(), agent_ttl_seconds=300)
    assert not away.load_agents([("a1", 1)], away.ticket())
    small = PrincipalCache(10, clock=Clock(), agent_ttl_seconds=300, max_entries=2)
    small.feed_consuming()
    assert not small.load_agents([("a1", 1), ("a2", 2), ("a3", 3)], small.ticket())


def test_the_cache_says_whose_agents_it_let_in_once():
    cache = listening_cache(Clock())
    assert cache.load_agents([("a1", 1), ("a2", 2)], cache.ticket())
    cache.put("person", PERSON, cache.ticket())
    cache.get("a1")
    cache.get("a1")
    cache.get("person")
    assert cache.take_used() == {1}
    assert cache.take_used() == set()
