"""The server list's liveness columns: reused for a few seconds per server, then asked again."""
from gateway.resources.servers import FleetStatusCache, requested_max_age
from shared.errors import ServiceUnavailable


class Monitoring:
    def __init__(self):
        self.asked, self.answers, self.down = [], {}, False

    def fleet_status(self, server_ids):
        self.asked.append(sorted(server_ids))
        if self.down:
            raise ServiceUnavailable("monitoring_ingest is not running", {})
        return {str(i): self.answers[i] for i in server_ids if i in self.answers}


def rows(*ids):
    return [{"id": i, "requests": 0, "requests_status": "red", "versions": {}, "state": "unknown"} for i in ids]


def up(requests):
    return {"state": "up", "requests": requests, "requests_status": "green" if requests >= 4 else "red",
            "versions": {"dns": "3.2.6"}}


def test_answers_are_reused_until_they_are_older_than_the_window():
    monitoring, now = Monitoring(), [100.0]
    cache = FleetStatusCache(monitoring, 2.0, clock=lambda: now[0])
    monitoring.answers = {1: up(4)}
    page = rows(1, 2)
    cache.add(page)
    assert monitoring.asked == [[1, 2]]
    assert page[0]["requests"] == 4 and page[1]["requests"] == 0
    assert page[0]["state"] == "unknown"  # the state is inventory's copy (what the list filters on), never merged

    monitoring.answers = {1: up(5), 2: up(1)}
    now[0] += 1.5
    again = rows(1, 2, 3)
    cache.add(again)  # 1 and 2 (even "never heard of") are still fresh: only 3 is asked for
    assert monitoring.asked[-1] == [3] and again[0]["requests"] == 4 and again[1]["requests"] == 0
    now[0] += 1.0
    later = rows(1, 2)
    cache.add(later)
    assert monitoring.asked[-1] == [1, 2] and later[0]["requests"] == 5 and later[1]["requests"] == 1


def test_an_unreachable_monitoring_shows_inventory_values_and_is_asked_again():
    monitoring = Monitoring()
    monitoring.down = True
    cache = FleetStatusCache(monitoring, 2.0)
    page = rows(1)
    cache.add(page)
    assert page[0]["state"] == "unknown"
    monitoring.down, monitoring.answers = False, {1: up(4)}
    page = rows(1)
    cache.add(page)
    assert len(monitoring.asked) == 2 and page[0]["requests"] == 4


def test_zero_seconds_asks_every_time():
    monitoring = Monitoring()
    cache = FleetStatusCache(monitoring, 0)
    cache.add(rows(1))
    cache.add(rows(1))
    assert monitoring.asked == [[1], [1]]


def test_a_client_that_asks_for_fresh_rows_gets_them_no_younger_than_the_floor():
    monitoring, now = Monitoring(), [100.0]
    cache = FleetStatusCache(monitoring, 2.0, fresh_seconds=0.5, clock=lambda: now[0])
    cache.add(rows(1))
    monitoring.answers = {1: up(1)}
    now[0] += 0.4
    page = rows(1)
    cache.add(page, max_age=0)  # younger than the floor: however many consoles ask, still the answer at hand
    assert len(monitoring.asked) == 1 and page[0]["requests"] == 0
    now[0] += 0.2
    page = rows(1)
    cache.add(page)  # a client that does not ask is served the cached answer
    assert len(monitoring.asked) == 1 and page[0]["requests"] == 0
    cache.add(page, max_age=0)
    assert len(monitoring.asked) == 2 and page[0]["requests"] == 1
    now[0] += 1.0
    cache.add(rows(1), max_age=60)  # asking for older than the cache keeps is no reason to keep it longer
    assert len(monitoring.asked) == 2
    now[0] += 1.5
    cache.add(rows(1), max_age=60)
    assert len(monitoring.asked) == 3


def test_cache_control_says_how_old_an_answer_the_client_takes():
    assert requested_max_age(None) is None and requested_max_age("no-store") is None
    assert requested_max_age("max-age=0") == 0 and requested_max_age("No-Cache") == 0
    assert requested_max_age("max-stale, max-age=5") == 5 and requested_max_age('max-age="3", no-cache') == 0
    assert requested_max_age("max-age=-1") is None and requested_max_age("max-age=soon") is None
