#!/usr/bin/env bash
# Stop the monitor component (the agent's statistics); the heartbeat goes on.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
stop_pidfile "$RUN/agent.pid" agent
record_version monitor ""
stopped_message monitor
