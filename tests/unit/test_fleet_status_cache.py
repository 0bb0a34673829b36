"""The server list's liveness columns: reused for a few seconds per server, then asked again."""
from gateway.resources.servers import FleetStatusCache
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
