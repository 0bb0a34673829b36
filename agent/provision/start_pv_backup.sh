#!/usr/bin/env bash
# Start the backup component at VERSION: the backup-server daemon (agent/backup_server/), which keeps
# the control plane's encrypted restic repositories. It ships in the bundle, so it runs as a process
# in both runtimes, like the monitor component.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
OPT="$PREFIX/opt/steward"
CONF="$ETC/backup-server.json"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e install_files first"
installed="$(PYTHONPATH="$OPT" python3 -c 'from agent import backup_server; print(backup_server.VERSION)')"
check_version backup "$installed"
mkdir -p "$RUN" "$LOG"
stop_pidfile "$RUN/backup-server.pid" backup-server
cd "$OPT"
if [ "$DEBUG" = 1 ]; then
    exec env PYTHONPATH="$OPT" python3 -m agent.backup_server --config "$CONF"
fi
PYTHONPATH="$OPT" setsid python3 -m agent.backup_server --config "$CONF" >>"$LOG/backup-server.log" 2>&1 </dev/null &
echo $! >"$RUN/backup-server.pid"
wait_running "$RUN/backup-server.pid" backup-server
# Started means answering: its API refuses an unauthenticated status with 401.
python3 - "$CONF" <<'PY' || die "the backup-server daemon does not answer; see $LOG/backup-server.log"
import http.client, json, sys, time
config = json.load(open(sys.argv[1]))
host = "127.0.0.1" if config.get("listen", "0.0.0.0") in ("0.0.0.0", "") else config["listen"]
for _ in range(100):
    try:
        connection = http.client.HTTPConnection(host, config.get("port", 8743), timeout=2)
        connection.request("GET", "/v1/status")
        if connection.getresponse().status == 401:
            print("backup-server answers on port %s" % config.get("port", 8743))
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
record_version backup "$VERSION"
echo "backup $VERSION started"
