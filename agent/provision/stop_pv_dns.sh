#!/usr/bin/env bash
# Stop the DNS component; quiet and successful when it is not running.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
# Only what this install started: its own container, or the process in its own pid file.
case "$RUNTIME" in
    docker) docker_stop "$(container_name dns)" ;;
    process) stop_pidfile "$RUN/knot/knot.pid" knotd ;;
esac
record_version dns ""
stopped_message dns
