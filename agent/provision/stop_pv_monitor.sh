#!/usr/bin/env bash
# Stop the monitor component (the agent); quiet and successful when it is not running.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
if [ "$PREFIX" = "" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl stop pv_heartbeat.service 2>/dev/null || true
else
    stop_pidfile "$RUN/agent.pid" agent
fi
record_version monitor ""
echo "monitor stopped"
