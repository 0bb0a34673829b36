#!/usr/bin/env bash
# Stop the DNS component; quiet and successful when it is not running.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
if [ "$RUNTIME" = docker ]; then docker_stop pv_dns; else stop_pidfile "$RUN/knot/knot.pid" knotd; fi
record_version dns ""
echo "dns stopped"
