#!/usr/bin/env bash
# Stop the backup component (the backup-server daemon); the stored repositories stay.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
stop_pidfile "$RUN/backup-server.pid" backup-server
record_version backup ""
stopped_message backup
