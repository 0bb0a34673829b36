"""make bench-gateway: the fleet list under gunicorn with 10,000 servers.

Prints, for GET /api/v2/servers (page of 50, with a search and a sort):
p50, p99 and requests/s with 1 and with 4 concurrent clients; and the RPC
round trip p50/p99 through the pooled client. Targets on a 2-core machine:
list p99 <= 50 ms with one client, >= 300 requests/s with four, RPC p50 <= 5 ms.
"""
import http.client
import json
import multiprocessing
import sys
import tempfile
import time

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


def seed(database_url, count):
    """10,000 servers, each with its own server user and three components, in a few statements."""
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
            "SELECT 'dns-' || lpad(i::text, 5, '0') || '.site' || (i % 40), '198.18.' || (i / 250) || '.' || (i % 250 + 1), "
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
    port, token, duration, barrier = args
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, page = [], 0
    barrier.wait()
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        page = page % 20 + 1
        started = time.perf_counter()
        connection.request("GET", LIST_PATH.format(page=page), headers=headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
    connection.close()
    return latencies


def run_clients(port, token, clients, duration):
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            started = time.perf_counter()
            results = pool.map(_client, [(port, token, duration, barrier)] * clients)
            elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": len(latencies) / min(elapsed, duration + 0.5),
    }


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
    from shared.config import SERVICES, load_settings
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
        started = {name: processes.service(name) for name in SERVICES}
        gateway = processes.gateway(port)
        meter = CpuMeter({
            "gateway": lambda: [gateway.pid, *children_of(gateway.pid)],
            "inventory": lambda: [started["inventory"].pid],
            "monitoring": lambda: [started["monitoring_ingest"].pid],
            "rabbitmq": lambda: pids_named("beam.smp"),
            "postgres": lambda: pids_named("postgres"),
        })
        wait_healthy(f"http://127.0.0.1:{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", LIST_PATH.format(page=1), headers={"Authorization": f"Bearer {token}"})
        first = json.loads(conn.getresponse().read())
        print(f"list query matches {first['total']} of {SERVERS} servers; page of {len(first['items'])}")
        run_clients(port, token, 2, 2.0)  # warm both workers' pools and caches

        meter.start()
        one = run_clients(port, token, 1, DURATION)
        one["cpu"] = format_cpu(*meter.stop(), one["requests"])
        # Four clients saturate both cores, where other tenants of a shared machine show most:
        # three rounds, and the median one.
        rounds = []
        for _ in range(ROUNDS):
            meter.start()
            result = run_clients(port, token, 4, DURATION)
            result["cpu"] = format_cpu(*meter.stop(), result["requests"])
            rounds.append(result)
        four = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
        four["each"] = ", ".join(f"{r['rps']:.1f}" for r in rounds)
        rpc_p50, rpc_p99 = rpc_round_trips(settings.amqp_uri)

    print()
    cache = settings.section("gateway").get("fleet_status_cache_seconds", 2)
    print("GET /api/v2/servers?search=site1&sort=-name&per_page=50 (gunicorn gthread, 2 workers x 4 threads; "
          f"liveness columns reused for {cache} s per server, STEWARD_FLEET_STATUS_CACHE_SECONDS)")
    for label, result in (("1 client ", one), ("4 clients", four)):
        print(f"  {label}: p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
              f"{result['rps']:7.1f} req/s  ({result['requests']} requests in {DURATION:.0f} s)")
        print(f"             {result['cpu']}")
        if "each" in result:
            print(f"             median of {ROUNDS} rounds, req/s in each: {result['each']}")
    print(f"RPC round trip (pooled client, inventory.health): p50 {rpc_p50:.2f} ms  p99 {rpc_p99:.2f} ms")
    print()
    checks = [
        ("list p99 <= 50 ms with 1 client", one["p99_ms"] <= 50),
        (">= 300 req/s with 4 clients", four["rps"] >= 300),
        ("RPC p50 <= 5 ms", rpc_p50 <= 5),
    ]
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
