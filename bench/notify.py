"""make bench-notify: time from an event on the broker to the email in the mailbox.

A real notifier process (its own database and vhost), a real SMTP server
(aiosmtpd writing a maildir) and a webhook-free email channel with a rule for
server_state_changed. Each sample dispatches one `server_state_changed`
(down) for a new server, as monitoring-ingest would, and waits for its email;
the latency runs from just before the dispatch to the moment the SMTP server
wrote the message (the file's mtime). Prints p50/p99 and the policy used: the
digest window is a deliberate wait, so the figure is window + pipeline.
"""
import argparse
import mailbox
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Processes, bench_environment, free_port, percentile

NAME = "steward_bench_notify"


def wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--window", type=float, default=0.5, help="digest_window_seconds for the run")
    parser.add_argument("--poll", type=float, default=0.1, help="poll_seconds for the run")
    args = parser.parse_args()

    env = bench_environment(NAME)
    from nameko.standalone.events import event_dispatcher

    from shared.config import DEFAULT_PATH, load_settings
    from shared.events import build_event, event_type
    from shared.migrations import upgrade
    from shared.rpc import RpcClient

    work = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    # Appended as text: each process substitutes the file's ${...} in its own environment.
    notifier = {"digest_window_seconds": args.window, "poll_seconds": args.poll}
    (work / "steward.yaml").write_text(DEFAULT_PATH.read_text() + yaml.safe_dump({"notifier": notifier}))
    env["STEWARD_CONFIG"] = str(work / "steward.yaml")
    os.environ["STEWARD_CONFIG"] = env["STEWARD_CONFIG"]
    settings = load_settings()
    upgrade(settings.database_url)

    maildir = work / "maildir"
    smtp_port = free_port()
    with Processes(env, work / "logs") as processes:
        processes.start("smtp", [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
                                 "-c", "aiosmtpd.handlers.Mailbox", str(maildir)])
        processes.service("notifier")
        rpc = RpcClient(settings.amqp_uri, timeout=5, caller="bench-notify")
        admin = {"user_id": 0, "name": "bench", "role": "admin"}
        wait(lambda: _answers(rpc), 60, "the notifier")
        channel = rpc.call("notifier", "create_channel", admin, {"name": "bench-mail", "kind": "email", "settings": {
            "host": "127.0.0.1", "port": smtp_port, "starttls": False, "sender": "steward@bench.example",
            "recipients": ["ops@bench.example"]}})
        rpc.call("notifier", "create_rule", admin, {"name": "outages", "channel_ids": [channel["id"]],
                                                    "event_types": ["server_state_changed"]})
        dispatch = event_dispatcher(settings)
        source = event_type("server_state_changed").source

        latencies = []
        for server_id in range(1, args.samples + 1):
            payload = build_event("server_state_changed", server_id=server_id, server_name=f"dns-bench-{server_id}",
                                  previous_state="up", state="down")
            started = time.time()
            dispatch(source, "server_state_changed", payload)
            path = wait(lambda: _mail_for(maildir, server_id), 30, f"the email for server {server_id}")
            latencies.append(os.stat(path).st_mtime - started)
            time.sleep(args.window + args.poll)  # let the next event open a window of its own
        rpc.close()

    ms = [1000 * s for s in latencies]
    print(f"notifier event -> delivered email over SMTP, {len(ms)} samples "
          f"(digest window {args.window * 1000:.0f} ms, poll {args.poll * 1000:.0f} ms):")
    print(f"  p50 {percentile(ms, 0.50):.0f} ms   p99 {percentile(ms, 0.99):.0f} ms   "
          f"min {min(ms):.0f} ms   max {max(ms):.0f} ms")
    print(f"  beyond the window: p50 {percentile(ms, 0.50) - args.window * 1000:.0f} ms, "
          f"p99 {percentile(ms, 0.99) - args.window * 1000:.0f} ms")
    return 0


def _answers(rpc):
    try:
        return rpc.call("notifier", "health", timeout=2)
    except Exception:
        return None


def _mail_for(maildir, server_id):
    subject = f"[Steward] dns-bench-{server_id} is DOWN"
    new = maildir / "new"
    if not new.exists():
        return None
    for key, message in mailbox.Maildir(maildir, create=False).items():
        if message["Subject"] == subject:
            return new / key  # aiosmtpd delivers into new/, where a file's name is its key
    return None


if __name__ == "__main__":
    sys.exit(main())
