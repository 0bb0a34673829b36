#!/usr/bin/env bash
# Start the monitor component at VERSION: the agent's statistics (system and DNS, pushed to
# RabbitMQ or served for pulling). It ships in the bundle, so it runs as a process in both
# runtimes; the heartbeat runs apart (pv_heartbeat.sh) and goes on while this is stopped.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
OPT="$PREFIX/opt/steward"
CONF="$ETC/agent.json"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e install_files first"
installed="$(PYTHONPATH="$OPT" python3 -c 'import agent; print(agent.AGENT_VERSION)')"
check_version monitor "$installed"
mkdir -p "$RUN" "$LOG"
stop_pidfile "$RUN/agent.pid" agent
cd "$OPT"
if [ "$DEBUG" = 1 ]; then
    exec env PYTHONPATH="$OPT:$OPT/vendor" python3 -m agent --config "$CONF" stats
fi
PYTHONPATH="$OPT:$OPT/vendor" setsid python3 -m agent --config "$CONF" stats >>"$LOG/agent.log" 2>&1 </dev/null &
echo $! >"$RUN/agent.pid"
sleep 0.3
wait_running "$RUN/agent.pid" agent
record_version monitor "$VERSION"
echo "monitor $VERSION started"
