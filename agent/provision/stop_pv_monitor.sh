#!/usr/bin/env bash
# Stop the monitor component (the agent's statistics); the heartbeat goes on.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
stop_pidfile "$RUN/agent.pid" agent
record_version monitor ""
echo "monitor stopped"
