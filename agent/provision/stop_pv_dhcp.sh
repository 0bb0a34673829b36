#!/usr/bin/env bash
# Stop the DHCP component; quiet and successful when it is not running.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
# Only what this install started: its own container, or the process in its own pid file.
case "$RUNTIME" in
    docker) docker_stop "$(container_name dhcp)" ;;
    process) stop_pidfile "$RUN/kea/kea-dhcp4.kea-dhcp4.pid" kea-dhcp4 ;;
esac
record_version dhcp ""
stopped_message dhcp
