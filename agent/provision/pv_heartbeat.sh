#!/usr/bin/env bash
# pv_heartbeat.sh start|stop: the agent's heartbeat, on its own so it goes on while components
# are stopped. Under systemd (prefix /) it is the pv_heartbeat.service unit; elsewhere (a
# throw-away prefix, hosts without systemd) the same command as a background process.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
OPT="$PREFIX/opt/steward"
PIDFILE="$RUN/heartbeat.pid"
systemd_manages() { [ "$PREFIX" = "" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

case "${1:-}" in
    start)
        [ -f "$ETC/agent.json" ] || die "$ETC/agent.json is missing: run pv_install.py -e install_files first"
        mkdir -p "$RUN" "$LOG"
        if systemd_manages; then
            systemctl daemon-reload
            systemctl enable pv_heartbeat.service >/dev/null 2>&1
            systemctl restart pv_heartbeat.service
            echo "pv_heartbeat.service restarted"
        else
            stop_pidfile "$PIDFILE" heartbeat
            cd "$OPT"
            PYTHONPATH="$OPT:$OPT/vendor" setsid python3 -m agent --config "$ETC/agent.json" heartbeat \
                >>"$LOG/heartbeat.log" 2>&1 </dev/null &
            echo $! >"$PIDFILE"
            sleep 0.3
            wait_running "$PIDFILE" heartbeat
        fi
        ;;
    stop)
        if systemd_manages; then
            systemctl disable --now pv_heartbeat.service >/dev/null 2>&1 || true
        else
            stop_pidfile "$PIDFILE" heartbeat
        fi
        echo "heartbeat stopped"
        ;;
    -h|--help) script_help "$(basename "$0") start|stop|-h" ;;
    *) echo "usage: $(basename "$0") start|stop|-h" >&2; exit 2 ;;
esac
