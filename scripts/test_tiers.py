"""`make test`: the suite in three pytest processes side by side, each with a database, vhost and temporary
folder of its own, their reports printed one after the other.

Most of the suite waits: on containers and `make up` (the stack tiers), on lab hosts' sshd, installs and
knotd (the lab tiers), on the broker and the database (the rest). Run one after the other it took 32 minutes
on this 2-core machine with the processors mostly idle; side by side the waits overlap.
`make test-serial` runs everything in one process.

    python -m scripts.test_tiers [pytest options...]
"""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, test paths): the last group runs whatever the others do not name.
GROUPS = (
    ("stacks", ["tests/compose", "tests/e2e", "tests/contract"]),
    ("labs", ["tests/provisioner", "tests/updater", "tests/agent", "tests/backup"]),
    ("rest", None),
)


def commands(extra):
    db = os.environ.get("STEWARD_TEST_DB", "steward_test")
    vhost = os.environ.get("STEWARD_TEST_VHOST", "steward_test")
    named = [path for _, paths in GROUPS if paths for path in paths]
    for name, paths in GROUPS:
        env = dict(os.environ, STEWARD_TEST_DB=f"{db}_{name}", STEWARD_TEST_VHOST=f"{vhost}_{name}")
        selection = paths if paths is not None else [f"--ignore={path}" for path in named]
        yield name, [sys.executable, "-m", "pytest", "-q", f"--basetemp=/tmp/{db}_{name}", *extra, *selection], env


def main(extra):
    logs = ROOT / ".steward"
    logs.mkdir(exist_ok=True)
    running = []
    for name, argv, env in commands(extra):
        log = logs / f"test-{name}.log"
        with open(log, "wb") as output:
            running.append((name, log, time.monotonic(), subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output,
                                                                         stderr=subprocess.STDOUT)))
        print(f"make test: {name} started ({' '.join(argv[3:])}), its report in {log}", flush=True)
    finished = {}
    try:
        while len(finished) < len(running):
            for name, _, started, process in running:
                if name not in finished and process.poll() is not None:
                    finished[name] = (process.returncode, time.monotonic() - started)
                    print(f"make test: {name} exited {process.returncode} after {finished[name][1]:.0f} s", flush=True)
            time.sleep(1)
    finally:  # interrupted: stop every group, not only the one in the foreground
        for _, _, _, process in running:
            if process.poll() is None:
                process.terminate()
    for name, log, _, _ in running:
        print(f"==== {name} ====")
        print(log.read_text(errors="replace"), flush=True)
    for name, (code, seconds) in finished.items():
        print(f"make test: {name} exited {code} after {seconds:.0f} s")
    return 0 if all(code == 0 for code, _ in finished.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
