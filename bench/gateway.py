"""make bench-gateway: the fleet list under gunicorn with 10,000 servers.

Prints, for GET /api/v2/servers (pages of 50), p50, p99 and requests/s with
1 and with 4 concurrent clients, in two cases:

* cached best case: one search and sort, pages 1-20 in a loop, no heartbeats,
  no writes: the fleet copy never reloads, the liveness answers are reused
  from the gateway's 2 s cache and monitoring-ingest has nothing to say;
* realistic: searches, sorts, state filters and pages varied (a fixed mix of
  QUERIES paths), heartbeats through the gateway for every server those
  pages list, at the agents' own interval (30 s each, stored by the ingest
  consumer), and a server changed through the API every second; each change
  (and each heartbeat that reports new versions) is applied to every
  inventory process's fleet copy.

and the RPC round trip p50/p99 through the pooled client. Targets on a
2-core machine: list p99 <= 50 ms with one client, >= 300 requests/s with
four, RPC p50 <= 5 ms (judged on the realistic case).
"""
import http.client
import json
import multiprocessing
import random
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone

from bench.common import (
    CpuMeter,
    Processes,
    bench_environment,
    children_of,
    format_cpu,
    free_port,
    percentile,
    pids_named,
    wait_healthy,
)

SERVERS = 10_000
DURATION = 10.0
ROUNDS = 3
LIST_PATH = "/api/v2/servers?search=site1&sort=-name&per_page=50&page={page}"
CACHED_PATHS = [LIST_PATH.format(page=page) for page in range(1, 21)]
# Names are dns-00001.site1 ... dns-10000.site0 (40 sites); every tenth server is stopped.
SEARCHES = ["", "site1", "site2", "site7", "site13", "site26", "site39", "dns-0", "dns-01", "dns-055", "dns-09",
            "0042", "5.site", "DNS-001"]
QUERIES = 200
HEARTBEAT_INTERVAL = 30.0  # seconds between one agent's heartbeats
WRITE_INTERVAL = 1.0


def realistic_paths(count=QUERIES, seed=1):
    """A fixed mix of list requests: search, sort, sometimes a state filter, one of the first pages."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        query = f"search={rng.choice(SEARCHES)}&sort={rng.choice(['name', '-name'])}&per_page=50&page={rng.randint(1, 5)}"
        if rng.random() < 0.25:
            query += f"&state={rng.choice(['running', 'stopped'])}"
        paths.append(f"/api/v2/servers?{query}")
    return paths


def seed(database_url, count):
    """``count`` servers, each with its own server user and three components, in a few statements. Names are
    dns-00001.site1 ... (five digits up to 99,999, then as many as ``count`` has), addresses in 198.18.0.0/15."""
    from sqlalchemy import text

    from shared.db import make_engine

    engine = make_engine(database_url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO inventory.users (name, role, auto_created) "
            "SELECT 'srv-bench-' || i, 'operator', true FROM generate_series(1, :n) AS i"), {"n": count})
        connection.execute(text(
            "INSERT INTO inventory.user_groups (user_id, group_id) "
            "SELECT u.id, g.id FROM inventory.users u, inventory.groups g "
            "WHERE g.name = 'servers' AND u.name LIKE 'srv-bench-%'"))
        connection.execute(text(
            "INSERT INTO inventory.servers (name, address, os, ssh_port, ssh_user, runtime, state, server_user_id) "
            "SELECT 'dns-' || lpad(i::text, greatest(5, length(CAST(:n AS text))), '0') || '.site' || (i % 40), "
            "'198.' || (18 + i / 64000) || '.' || (i / 250 % 256) || '.' || (i % 250 + 1), "
            "CASE WHEN i % 2 = 0 THEN 'ubuntu' ELSE 'centos' END, 22, 'root', 'process', "
            "CASE WHEN i % 10 = 0 THEN 'stopped' ELSE 'running' END, u.id "
            "FROM generate_series(1, :n) AS i JOIN inventory.users u ON u.name = 'srv-bench-' || i"), {"n": count})
        connection.execute(text(
            "INSERT INTO inventory.server_components (server_id, name, version, state) "
            "SELECT s.id, c.name, c.version, CASE WHEN s.state = 'running' THEN 'running' ELSE 'stopped' END "
            "FROM inventory.servers s, (VALUES ('dns', '3.2.6'), ('dhcp', '2.2.0'), ('monitor', '1.4.0')) AS c(name, version)"))
        connection.execute(text("ANALYZE"))
    engine.dispose()


def _client(args):
    port, token, duration, barrier, paths, offset = args
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, n = [], offset
    barrier.wait()
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        n += 1
        started = time.perf_counter()
        connection.request("GET", paths[n % len(paths)], headers=headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
    connection.close()
    return latencies


def run_clients(port, token, clients, duration, paths):
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            started = time.perf_counter()
            offsets = [i * len(paths) // clients for i in range(clients)]  # each client its own part of the mix
            results = pool.map(_client, [(port, token, duration, barrier, paths, offset) for offset in offsets])
            elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": len(latencies) / min(elapsed, duration + 0.5),
    }


def listed_server_ids(port, token, paths):
    """Every server the mix of paths lists."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ids = set()
    for path in sorted(set(paths)):
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        ids |= {row["id"] for row in json.loads(connection.getresponse().read())["items"]}
    connection.close()
    return sorted(ids)


def seed_agent_tokens(database_url, server_ids):
    """An agent token per server, as issue_agent_token stores them (SHA-256 only); the secrets."""
    from sqlalchemy import text

    from shared.crypto import token_hash
    from shared.db import make_engine

    tokens = {server_id: secrets.token_hex(24) for server_id in server_ids}
    engine = make_engine(database_url, pool_size=1)
    with engine.begin() as connection:  # one statement: a fleet of 100,000 (bench/fleet.py) in seconds
        connection.execute(text(
            "INSERT INTO inventory.api_tokens (user_id, name, token_hash, prefix, scope, server_id) "
            "SELECT s.server_user_id, 'agent ' || s.name, t.hash, t.prefix, 'agent', s.id "
            "FROM unnest(CAST(:ids AS int[]), CAST(:hashes AS text[]), CAST(:prefixes AS text[])) AS t(id, hash, prefix) "
            "JOIN inventory.servers s ON s.id = t.id"),
            {"ids": list(tokens), "hashes": [token_hash(t) for t in tokens.values()],
             "prefixes": [t[:8] for t in tokens.values()]})
    engine.dispose()
    return tokens


def _heartbeats(port, tokens, stop):
    """Each server's heartbeat every HEARTBEAT_INTERVAL seconds, spread evenly, until ``stop`` is set."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    servers = list(tokens.items())
    spacing = HEARTBEAT_INTERVAL / len(servers)
    started, n = time.perf_counter(), 0
    while not stop.is_set():
        server_id, token = servers[n % len(servers)]
        body = json.dumps({"v": 1, "kind": "heartbeat", "server_id": server_id, "seq": n // len(servers) + 1,
                           "collected_at": datetime.now(timezone.utc).isoformat(),
                           "data": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.4.0"}}})
        connection.request("POST", "/api/v2/monitoring/heartbeat", body=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 202:
            raise RuntimeError(f"heartbeat: HTTP {response.status}: {answer[:200]!r}")
        n += 1
        ahead = started + n * spacing - time.perf_counter()
        if ahead > 0:
            stop.wait(ahead)


def _writes(port, token, server_ids, stop):
    """A server changed through the API every WRITE_INTERVAL seconds (its SSH port), until ``stop`` is set."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    while not stop.wait(WRITE_INTERVAL):
        n += 1
        connection.request("PATCH", f"/api/v2/servers/{server_ids[n % len(server_ids)]}",
                           body=json.dumps({"ssh_port": 2200 + n % 100}),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"write: HTTP {response.status}: {answer[:200]!r}")


class LiveFleet:
    """Heartbeats and writes in processes of their own while the clients measure."""

    def __init__(self, port, admin_token, agent_tokens):
        self.stop = multiprocessing.Event()
        self.processes = [
            multiprocessing.Process(target=_heartbeats, args=(port, agent_tokens, self.stop), daemon=True),
            multiprocessing.Process(target=_writes, args=(port, admin_token, sorted(agent_tokens), self.stop),
                                    daemon=True),
        ]

    def __enter__(self):
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for process in self.processes:
            process.join(15)
        if not exc[0] and any(process.exitcode for process in self.processes):
            raise RuntimeError("the heartbeat or write load failed (see above)")


def rpc_round_trips(amqp_uri, calls=2000):
    from shared.rpc import RpcClient

    client = RpcClient(amqp_uri, caller="bench")
    for _ in range(100):
        client.call("inventory", "health")
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        client.call("inventory", "health")
        samples.append(time.perf_counter() - started)
    client.close()
    return percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000


def main():
    env = bench_environment("steward_bench")
    from services.inventory.bootstrap import bootstrap_admin
    from shared.config import load_settings, registered_services
    from shared.migrations import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    started = time.perf_counter()
    seed(settings.database_url, SERVERS)
    print(f"seeded {SERVERS} servers in {time.perf_counter() - started:.1f} s")
    token = bootstrap_admin(settings.database_url, "bench-admin")
    port = free_port()
    with Processes(env, tempfile.mkdtemp(prefix="steward-bench-")) as processes:
        # Every service, as in production: /healthz waits for all, and the list asks monitoring-ingest too.
        started = {name: processes.service(name) for name in registered_services()}
        consumer = processes.start("consumer", [sys.executable, "-m", "services.monitoring_ingest.consumer"])
        gateway = processes.gateway(port)
        meter = CpuMeter({
            "gateway": lambda: [gateway.pid, *children_of(gateway.pid)],
            "inventory": lambda: [started["inventory"].pid],
            "monitoring": lambda: [started["monitoring_ingest"].pid, consumer.pid],
            "rabbitmq": lambda: pids_named("beam.smp"),
            "postgres": lambda: pids_named("postgres"),
        })
        wait_healthy(f"http://127.0.0.1:{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", LIST_PATH.format(page=1), headers={"Authorization": f"Bearer {token}"})
        first = json.loads(conn.getresponse().read())
        print(f"cached case: the query matches {first['total']} of {SERVERS} servers; page of {len(first['items'])}")
        paths = realistic_paths()
        listed = listed_server_ids(port, token, paths)
        agent_tokens = seed_agent_tokens(settings.database_url, listed)
        print(f"realistic case: {len(set(paths))} distinct requests list {len(listed)} servers; each sends a heartbeat "
              f"every {HEARTBEAT_INTERVAL:.0f} s ({len(listed) / HEARTBEAT_INTERVAL:.0f}/s through the gateway), "
              f"and a server changes every {WRITE_INTERVAL:.0f} s")

        def measure(paths):
            run_clients(port, token, 2, 2.0, paths)  # warm both workers' pools and caches
            meter.start()
            one = run_clients(port, token, 1, DURATION, paths)
            one["cpu"] = format_cpu(*meter.stop(), one["requests"])
            # Four clients saturate both cores, where other tenants of a shared machine show most:
            # three rounds, and the median one.
            rounds = []
            for _ in range(ROUNDS):
                meter.start()
                result = run_clients(port, token, 4, DURATION, paths)
                result["cpu"] = format_cpu(*meter.stop(), result["requests"])
                rounds.append(result)
            four = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
            four["each"] = ", ".join(f"{r['rps']:.1f}" for r in rounds)
            return one, four

        cached = measure(CACHED_PATHS)
        with LiveFleet(port, token, agent_tokens):
            realistic = measure(paths)
        rpc_p50, rpc_p99 = rpc_round_trips(settings.amqp_uri)

    print()
    cache = settings.section("gateway").get("fleet_status_cache_seconds", 2)
    print(f"GET /api/v2/servers, pages of 50 (gunicorn gthread, 2 workers x 4 threads; liveness columns reused for "
          f"{cache} s per server, STEWARD_FLEET_STATUS_CACHE_SECONDS)")
    for title, (one, four) in (
            ("cached best case: search=site1&sort=-name, pages 1-20, no heartbeats, no writes", cached),
            (f"realistic: {QUERIES} varied searches, sorts, filters and pages; heartbeats of the listed servers; "
             f"a write every {WRITE_INTERVAL:.0f} s", realistic)):
        print(title)
        for label, result in (("1 client ", one), ("4 clients", four)):
            print(f"  {label}: p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                  f"{result['rps']:7.1f} req/s  ({result['requests']} requests in {DURATION:.0f} s)")
            print(f"             {result['cpu']}")
            if "each" in result:
                print(f"             median of {ROUNDS} rounds, req/s in each: {result['each']}")
    print(f"RPC round trip (pooled client, inventory.health): p50 {rpc_p50:.2f} ms  p99 {rpc_p99:.2f} ms")
    print()
    one, four = realistic
    checks = [
        ("list p99 <= 50 ms with 1 client (realistic)", one["p99_ms"] <= 50),
        (">= 300 req/s with 4 clients (realistic)", four["rps"] >= 300),
        ("RPC p50 <= 5 ms", rpc_p50 <= 5),
    ]
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
