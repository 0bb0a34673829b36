"""make bench-install: push-install 20 lab hosts at once and one alone, and the same 20 with Ansible.

The stack runs as real processes (inventory, provisioner, gateway under
gunicorn) on a database and vhost of its own; the managed servers are lab
hosts (network namespaces with their own sshd, tests/lab.py). Prints:

* one host alone: wall time from POST push-install to the task's success,
  the median of SINGLE_RUNS installs, each on a fresh host (each run printed);
* 20 hosts at once: wall time until the last of the 20 succeeded (target: at
  most 2x the single host's median);
* 20 other fresh hosts with an equivalent Ansible playbook, for comparison,
  doing the same work from the same state: the clock starts before the setup
  bundles are fetched from the API, four at a time (each fetch issues the
  agent token and RabbitMQ user, as a push install does), then the playbook copies each
  bundle, unarchives it, runs install_python3.sh and pv_install.py (forks=20).

``python -m bench.install --demo`` instead walks through one install as a user
would (make demo): the CLI's progress bar, the fleet list, a DNS query, a lease.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import ROOT, Processes, bench_environment, free_port, process_cpu_seconds
from tests.lab import lab_hosts

HOSTS = 20
SINGLE_RUNS = 5
BUNDLE_FETCHES = 4  # setup bundles fetched at once for the Ansible run
PLAYBOOK = """
- hosts: lab
  gather_facts: false
  tasks:
    - name: copy the setup bundle
      copy: {src: "{{ bundle }}", dest: "{{ home }}/setup.tar", mode: "0600"}
    - name: unarchive it
      unarchive: {src: "{{ home }}/setup.tar", dest: "{{ home }}", remote_src: true}
    - name: python3
      command: bash {{ home }}/setup-{{ server_id }}/install_python3.sh
    - name: run the install
      command: python3 {{ home }}/setup-{{ server_id }}/pv_install.py --prefix {{ prefix }}
"""


def machine_busy_seconds():
    """CPU seconds (all cores) this machine spent busy since boot: user+nice+system+irq+softirq."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where the CPU went during a phase: the provisioner process, and the whole machine."""

    def __init__(self, provisioner_pid):
        self.pid = provisioner_pid

    def __enter__(self):
        self.before = (process_cpu_seconds(self.pid), machine_busy_seconds())
        return self

    def __exit__(self, *exc):
        self.provisioner = process_cpu_seconds(self.pid) - self.before[0]
        self.machine = machine_busy_seconds() - self.before[1]

    def __str__(self):
        return (f"CPU: provisioner {self.provisioner:.1f} s, whole machine {self.machine:.1f} s "
                f"(of {os.cpu_count()} cores; the lab hosts' installs run on them too)")


class Stack:
    def __init__(self, processes, url, token):
        self.url = url + "/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.processes = processes

    def call(self, method, path, **kwargs):
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        response.raise_for_status()
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else response

    def register(self, host, name):
        return self.call("POST", "/servers", json={
            "name": name, "address": host.address, "os": "ubuntu", "runtime": "process",
            "ssh_private_key": host.private_key})

    def install_all(self, servers):
        """Wall seconds from the first POST until every task finished; the finished tasks."""
        started = time.perf_counter()
        tasks = [self.call("POST", f"/servers/{s['id']}/actions/push-install") for s in servers]
        pending = {t["id"] for t in tasks}
        finished = {}
        while pending:
            for task_id in list(pending):
                task = self.call("GET", f"/tasks/{task_id}")
                if task["state"] in ("succeeded", "failed"):
                    finished[task_id] = task
                    pending.discard(task_id)
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        failed = [t for t in finished.values() if t["state"] != "succeeded"]
        if failed:
            raise SystemExit(f"{len(failed)} install(s) failed, e.g.: {failed[0]['error']}")
        return elapsed, list(finished.values())


def start_stack(env, processes):
    from services.inventory.bootstrap import bootstrap_admin
    from shared.config import load_settings
    from shared.migrations import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    token = bootstrap_admin(settings.database_url, "admin")
    port = free_port()
    processes.service("inventory")
    processes.provisioner = processes.service("provisioner")
    processes.gateway(port, workers=2, threads=8)
    stack = Stack(processes, f"http://127.0.0.1:{port}", token)
    wait_for_services(stack)
    # Agents' per-server RabbitMQ users go to this run's own vhost.
    stack.call("PATCH", "/settings", json={"rabbitmq": {"vhost": env["STEWARD_AMQP_VHOST"]}})
    return stack


def wait_for_services(stack, seconds=60):
    """/healthz wants every service; this benchmark runs the two an install needs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            listed = stack.session.get(f"{stack.url}/servers", timeout=5).status_code
            # 404 task_not_found comes from the provisioner itself; 503 means no replica yet.
            probed = stack.session.get(f"{stack.url}/tasks/none", timeout=5).status_code
            if listed == 200 and probed == 404:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{stack.url} did not come up")


def ansible_install(stack, hosts, servers, workdir):
    """Fresh hosts provisioned by an Ansible playbook; returns wall seconds, the bundles' fetch included."""
    started = time.perf_counter()

    def fetch(server):
        bundle = Path(workdir) / f"setup-{server['id']}.tar"
        bundle.write_bytes(stack.call("GET", f"/servers/{server['id']}/bundle").content)
        return bundle

    # Four at a time: twenty at once made the gateway answer 503 (inventory did not answer within 10 s).
    with ThreadPoolExecutor(max_workers=BUNDLE_FETCHES) as pool:
        bundles = list(pool.map(fetch, servers))
    inventory = {"lab": {"hosts": {}}}
    for host, server, bundle in zip(hosts, servers, bundles):
        inventory["lab"]["hosts"][f"lab{server['id']}"] = {
            "ansible_host": host.address, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(host.root / "client_key"),
            "ansible_python_interpreter": "/usr/bin/python3",
            "bundle": str(bundle), "home": str(host.root / "home" / "root"), "prefix": str(host.prefix),
            "server_id": server["id"],
        }
    (Path(workdir) / "inventory.json").write_text(json.dumps(inventory))
    (Path(workdir) / "install.yml").write_text(PLAYBOOK)
    env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_FORKS": str(len(hosts)), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(Path(workdir) / "ansible-local"), "PATH": f"{ROOT}/.venv/bin:/usr/bin:/bin:/usr/sbin",
           "HOME": workdir}
    done = subprocess.run([f"{ROOT}/.venv/bin/ansible-playbook", "-i", "inventory.json", "install.yml"], cwd=workdir,
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"ansible-playbook failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed


def delete_agent_users(stack, servers):
    from services.provisioner.rabbitmq_users import RabbitMQUsers

    users = RabbitMQUsers("http://127.0.0.1:15672", "guest", "guest", os.environ["STEWARD_AMQP_VHOST"])
    for server in servers:
        users.delete_agent_user(server["id"])


def benchmark(stack, workdir):
    # Every install starts from a fresh lab host: nothing installed, no pinned key, no bundle fetched.
    with lab_hosts(SINGLE_RUNS + HOSTS) as hosts:
        servers = [stack.register(host, f"bench-{i:02d}") for i, host in enumerate(hosts)]
        singles = []
        for server in servers[:SINGLE_RUNS]:
            with CpuSplit(stack.processes.provisioner.pid) as cpu_alone:
                seconds, [task] = stack.install_all([server])
            singles.append((seconds, task, cpu_alone))
        alone, task, cpu_alone = sorted(singles, key=lambda run: run[0])[SINGLE_RUNS // 2]
        steps = stack.call("GET", f"/tasks/{task['id']}/log")["steps"]
        slowest = sorted(steps, key=lambda s: -s["duration_ms"])[:4]
        print(f"1 host alone:      {alone:6.1f} s   median of {SINGLE_RUNS} fresh hosts "
              f"[{', '.join(f'{run[0]:.1f}' for run in singles)}]; in the median run, slowest steps: "
              + ", ".join(f"{s['name']} {s['duration_ms'] / 1000:.1f} s" for s in slowest) + f"; {cpu_alone}")
        with CpuSplit(stack.processes.provisioner.pid) as cpu_many:
            many, _ = stack.install_all(servers[SINGLE_RUNS:])
        print(f"{HOSTS} hosts at once:  {many:6.1f} s   ({many / alone:.2f}x one host; target <= 2x); {cpu_many}")
        floor = cpu_many.machine / (os.cpu_count() or 1)
        print(f"   the machine was busy {cpu_many.machine:.1f} CPU-s for the {HOSTS} installs: at least {floor:.1f} s "
              f"of wall time on {os.cpu_count()} cores, whoever schedules them")
        delete_agent_users(stack, servers)
    with lab_hosts(HOSTS) as hosts:
        servers = [stack.register(host, f"bench-ansible-{i:02d}") for i, host in enumerate(hosts)]
        ansible = ansible_install(stack, hosts, servers, workdir)
        print(f"{HOSTS} hosts, Ansible: {ansible:6.1f} s   (fetch the bundles {BUNDLE_FETCHES} at a time + copy + "
              f"unarchive + install on {HOSTS} fresh hosts, forks={HOSTS}; {ansible / many:.2f}x the push install)")
        delete_agent_users(stack, servers)


def demo(stack):
    """One install as a user sees it."""
    from services.provisioner.bundle import PROVISION_DIR

    cli = [sys.executable, "-m", "cli.main", "--url", stack.url[:-len("/api/v2")],
           "--token", stack.session.headers["Authorization"].split()[1]]
    with lab_hosts(1) as (host,):
        print(f"lab host {host.namespace}: {host.address} (sshd, root and '{host.user}' logins)\n")
        with tempfile.NamedTemporaryFile("w") as password:
            password.write(host.root_password)
            password.flush()
            subprocess.run(cli + ["servers", "create", "--name", "demo-dns-1", "--address", host.address, "--os",
                                  "ubuntu", "--runtime", "process", "--ssh-password-file", password.name], check=True)
        subprocess.run(cli + ["servers", "install", "demo-dns-1"], check=True)
        subprocess.run(cli + ["servers", "list"], check=True)
        print("\n$ kdig @%s pvverify.test TXT +short" % host.address)
        subprocess.run(["kdig", f"@{host.address}", "pvverify.test", "TXT", "+short"])
        print("$ (on the server) python3 pv_probes.py dhcp")
        print(host.exec("python3", str(PROVISION_DIR / "pv_probes.py"), "dhcp").stdout)
        subprocess.run(cli + ["servers", "delete", "demo-dns-1"], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="one install, as a user sees it")
    args = parser.parse_args(argv)
    env = bench_environment("steward_bench_install")
    with tempfile.TemporaryDirectory() as workdir, Processes(env, Path(workdir) / "logs") as processes:
        stack = start_stack(env, processes)
        try:
            demo(stack) if args.demo else benchmark(stack, workdir)
        except BaseException:
            for log in sorted((Path(workdir) / "logs").glob("*.log")):
                print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
