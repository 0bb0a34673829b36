"""``python3 -m agent --config PATH [all|heartbeat|stats]``.

``heartbeat`` is what pv_heartbeat.service runs; ``stats`` collects system and
DNS statistics and pushes or serves them; ``all`` (the default) does both."""
import argparse
import logging
import os
import signal
import sys
import threading
import time

from agent.config import PULL, ConfigError, load_config
from agent.dns_stats import DnsCounter
from agent.dnstap import DnstapListener
from agent.heartbeat import Heartbeat
from agent.messages import DNS, SYSTEM, utc_now
from agent.pull import PullServer
from agent.push import Publisher
from agent.spool import Spool
from agent.switches import Switches
from agent.system_stats import SystemStats

log = logging.getLogger("agent")


class Collector:
    """Takes a system reading and closes a DNS period at their intervals, into the spool."""

    def __init__(self, config, spool, counter, system_stats, before_last_period=lambda: None, switches=None):
        self.spool = spool
        self.switches = switches or Switches(os.path.join(config.spool_dir, "collect.json"))
        self.before_last_period = before_last_period
        self.counter = counter
        self.system_stats = system_stats
        self.intervals = {SYSTEM: config.system_interval, DNS: config.dns_interval}

    def collect(self, kind):
        if kind == SYSTEM:
            if self.switches.on(SYSTEM):
                self.spool.append(SYSTEM, utc_now(), self.system_stats.collect())
        else:
            collected_at, data = self.counter.take()  # taken also when off: no stale counts once it is on again
            if self.switches.on(DNS):
                self.spool.append(DNS, collected_at, data)

    def run(self, stopping):
        due = {kind: time.monotonic() + interval for kind, interval in self.intervals.items()}
        while not stopping.is_set():
            kind = min(due, key=due.get)
            if stopping.wait(max(0.0, due[kind] - time.monotonic())):
                break
            try:
                self.collect(kind)
            except (OSError, ValueError) as error:
                log.error("%s statistics not collected: %s", kind, error)
            due[kind] += self.intervals[kind]
        # Close the running DNS period into the spool, so counted queries do not vanish with the process.
        self.before_last_period()
        self.collect(DNS)


def run_stats(config, stopping):
    spool = Spool(config.spool_path, config.spool_max_messages, config.server_id)
    counter = DnsCounter()
    listener = DnstapListener(config.dnstap_socket, counter.count)
    listener.start()
    if config.communication_type == PULL:
        server = PullServer(spool, config.agent_token, config.pull_listen, config.pull_port)
        server.start()
    else:
        # The publisher watches `stopping` itself; joined below.
        publisher = threading.Thread(target=Publisher(spool, config.rabbitmq).run, args=(stopping,), name="push", daemon=True)
        publisher.start()
    try:
        Collector(config, spool, counter, SystemStats(), listener.wait_for_writers_to_flush).run(stopping)
    finally:
        listener.stop()
        if config.communication_type == PULL:
            server.stop()
        else:
            publisher.join(10)
        spool.close()


def run_heartbeat(config, stopping):
    if not config.monitoring_url:
        raise ConfigError("monitoring_url is required for the heartbeat")
    # A spool file of its own, used only for its persisted heartbeat numbering: the heartbeat
    # process must not contend with the statistics process for the statistics spool.
    sequence = Spool(os.path.join(config.spool_dir, "heartbeat.sqlite3"), 1, config.server_id)
    try:
        Heartbeat(config, sequence).run(stopping)
    finally:
        sequence.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m agent", description="Steward agent")
    parser.add_argument("--config", required=True, help="the JSON file the setup bundle wrote")
    parser.add_argument("--log-level", default=os.environ.get("STEWARD_AGENT_LOG_LEVEL", "INFO"))
    parser.add_argument("mode", nargs="?", default="all", choices=("all", "heartbeat", "stats"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.ERROR)  # the agent logs what matters itself, without bodies
    try:
        config = load_config(args.config)
    except ConfigError as error:
        log.error("%s", error)
        return 2

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    parts = {"heartbeat": [run_heartbeat], "stats": [run_stats], "all": [run_heartbeat, run_stats]}[args.mode]
    failed = []

    def guarded(part):
        try:
            part(config, stopping)
        except Exception:  # one part failing stops the rest, so the service manager restarts us whole
            log.exception("%s failed", part.__name__)
            failed.append(part.__name__)
            stopping.set()

    threads = [threading.Thread(target=guarded, args=(part,), name=part.__name__) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins let the signal handlers run in the main thread
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
