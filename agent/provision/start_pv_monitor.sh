#!/usr/bin/env bash
# Start the monitor component: the Steward agent (heartbeats and statistics) at VERSION.
# Where systemd manages the prefix (production, prefix /) the pv_heartbeat unit runs it;
# elsewhere it runs as a plain background process with the same command line.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
OPT="$PREFIX/opt/steward"
CONF="$ETC/agent.json"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e install_files first"
installed="$(PYTHONPATH="$OPT" python3 -c 'import agent; print(agent.AGENT_VERSION)')"
check_version monitor "$installed"
mkdir -p "$RUN" "$LOG"

if [ "$PREFIX" = "" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable pv_heartbeat.service >/dev/null 2>&1
    systemctl restart pv_heartbeat.service
else
    stop_pidfile "$RUN/agent.pid" agent
    if [ "$DEBUG" = 1 ]; then
        cd "$OPT" && exec env PYTHONPATH="$OPT:$OPT/vendor" python3 -m agent --config "$CONF"
    fi
    cd "$OPT"
    PYTHONPATH="$OPT:$OPT/vendor" setsid python3 -m agent --config "$CONF" >>"$LOG/agent.log" 2>&1 </dev/null &
    echo $! >"$RUN/agent.pid"
    sleep 0.3
    wait_running "$RUN/agent.pid" agent
fi
record_version monitor "$VERSION"
echo "monitor $VERSION started"
