"""python3 -m agent.backup_server --config backup-server.json

Configuration keys (JSON): ``listen`` (0.0.0.0), ``port`` (8743), ``data_dir`` (the repositories and
the daemon's database), ``enrollment_token_sha256`` (from the setup bundle), ``disk_low_percent`` (10),
``reserve_bytes`` (what a backup may never take, 64 MiB), ``disk_interval_seconds`` (30).
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading

from .repository import Repositories
from .server import Daemon, DiskWatch, Server, start_watch
from .users import Database, Users

DEFAULTS = {"listen": "0.0.0.0", "port": 8743, "data_dir": "/var/lib/steward-backup", "enrollment_token_sha256": None,
            "disk_low_percent": 10.0, "reserve_bytes": 64 << 20, "disk_interval_seconds": 30.0}


def load_config(path):
    with open(path) as f:
        values = json.load(f)
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError("unknown keys in %s: %s" % (path, ", ".join(unknown)))
    return dict(DEFAULTS, **values)


def build(config):
    os.makedirs(config["data_dir"], mode=0o700, exist_ok=True)
    database = Database(os.path.join(config["data_dir"], "backup-server.sqlite3"))
    repositories = Repositories(os.path.join(config["data_dir"], "repositories"), int(config["reserve_bytes"]))
    disk = DiskWatch(repositories, database, float(config["disk_low_percent"]))
    return Daemon(repositories, Users(database), database, disk, config["enrollment_token_sha256"])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Steward's backup-server daemon")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        print("backup-server: bad configuration: %s" % exc, file=sys.stderr)
        return 2
    daemon = build(config)
    server = Server((config["listen"], int(config["port"])), daemon)
    stopping = start_watch(daemon.disk, float(config["disk_interval_seconds"]))
    daemon.disk.sample()

    def stop(signum, frame):
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("backup_server").info("listening on %s:%s", config["listen"], config["port"])
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
