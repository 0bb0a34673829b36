#!/usr/bin/env bash
# Stop the DHCP component; quiet and successful when it is not running.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
if [ "$RUNTIME" = docker ]; then docker_stop pv_dhcp; else stop_pidfile "$RUN/kea/kea-dhcp4.kea-dhcp4.pid" kea-dhcp4; fi
record_version dhcp ""
echo "dhcp stopped"
