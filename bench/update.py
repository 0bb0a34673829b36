"""make bench-update: the time of one push update, of one rollback, and of a 6-host rollout.

The stack runs as real processes (inventory, provisioner, updater, gateway under
gunicorn) on a database and vhost of its own; the managed servers are lab hosts
(tests/lab.py) installed by the provisioner first (not timed). Prints:

* a single DNS update on one host: wall time from POST push-update until the
  task succeeded (stop, check, transfer + install, start, verify PVOK);
* a broken release on the same host: until the task ended rolled_back (the same
  steps, a failed verification, and the previous version started and verified again);
* a rollout of the good release over 6 hosts (canary 1, then batches of 2):
  until the rollout succeeded.
"""
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Processes, bench_environment
from bench.install import delete_agent_users, start_stack
from tests.lab import lab_hosts
from tests.updater.images import dns_image

ROLLOUT_HOSTS = 6


def wait(stack, path, done, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = stack.call("GET", path)
        if done(item):
            return item
        time.sleep(0.1)
    raise SystemExit(f"{path} did not finish within {timeout} s: {item}")


def wait_for_updater(stack, seconds=60):
    """503 until the updater process consumes its RPC queue."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stack.session.get(f"{stack.url}/versions", timeout=10).status_code == 200:
            return
        time.sleep(0.3)
    raise SystemExit("the updater did not come up")


def upload(stack, data):
    return stack.call("POST", "/versions", data=data, headers={"Content-Type": "application/gzip"})


def push(stack, server_id):
    started = time.perf_counter()
    task = stack.call("POST", f"/servers/{server_id}/actions/push-update", json={"component": "dns"})
    task = wait(stack, f"/update-tasks/{task['task_id']}", lambda t: t["state"] not in ("queued", "running"))
    return time.perf_counter() - started, task


def benchmark(stack):
    stack.call("PATCH", "/settings", json={"update": {"mode": "local"}})
    wait_for_updater(stack)
    with lab_hosts(ROLLOUT_HOSTS + 1) as hosts:
        servers = [stack.register(host, f"bench-upd-{i:02d}") for i, host in enumerate(hosts)]
        try:
            installed, _ = stack.install_all(servers)
            print(f"(setup: {len(servers)} lab hosts installed in {installed:.1f} s, not part of the figures)")
            upload(stack, dns_image("3.3"))
            upload(stack, dns_image("3.4", broken=True))

            single, task = push(stack, servers[0]["id"])
            if task["state"] != "rolled_back":  # newest is the broken 3.4: this is the rollback figure
                raise SystemExit(f"expected a rollback, got {task['state']}: {task['error']}")
            print(f"push update to a broken release, rolled back: {single:.2f} s ({task['step_count']} steps)")

            started = time.perf_counter()
            task = stack.call("POST", f"/servers/{servers[0]['id']}/actions/push-update",
                              json={"component": "dns", "version": "3.3"})
            task = wait(stack, f"/update-tasks/{task['task_id']}", lambda t: t["state"] not in ("queued", "running"))
            single = time.perf_counter() - started
            if task["state"] != "succeeded":
                raise SystemExit(f"the single update failed: {task['error']}")
            print(f"single push update (dns 3.2.6 -> 3.3, verified PVOK): {single:.2f} s")

            started = time.perf_counter()
            rollout = stack.call("POST", "/rollouts", json={
                "server_ids": [s["id"] for s in servers[1:]], "component": "dns", "version": "3.3",
                "canary_size": 1, "batch_size": 2})
            rollout = wait(stack, f"/rollouts/{rollout['id']}", lambda r: r["state"] != "running")
            elapsed = time.perf_counter() - started
            if rollout["state"] != "succeeded":
                raise SystemExit(f"the rollout ended {rollout['state']}: {rollout['paused_reason']}")
            waves = max(s["wave"] for s in rollout["servers"]) + 1
            print(f"rollout over {ROLLOUT_HOSTS} hosts (canary 1, batches of 2: {waves} waves): {elapsed:.2f} s")
        finally:
            delete_agent_users(stack, servers)


def main():
    env = bench_environment("steward_bench_update")
    with tempfile.TemporaryDirectory() as workdir:
        env["STEWARD_UPDATER_STORAGE"] = str(Path(workdir) / "images")
        with Processes(env, Path(workdir) / "logs") as processes:
            stack = start_stack(env, processes)
            processes.service("updater")
            try:
                benchmark(stack)
            except BaseException:
                for log in sorted((Path(workdir) / "logs").glob("*.log")):
                    print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]),
                          file=sys.stderr)
                raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
