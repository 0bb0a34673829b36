#!/usr/bin/env bash
# Start the DHCP component (Kea DHCPv4) at VERSION: a container, or kea-dhcp4 as a process.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
mkdir -p "$RUN/kea" "$LIB/kea" "$LOG"
CONF="$ETC/kea/kea-dhcp4.json"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e configure_components first"

if [ "$RUNTIME" = docker ]; then
    docker_stop pv_dhcp
    if [ "$DEBUG" = 1 ]; then
        exec docker run --rm -it --network host -v "$ETC/kea:$ETC/kea" -v "$LIB/kea:$LIB/kea" \
            -v "$RUN/kea:$RUN/kea" --entrypoint /bin/sh "$IMAGE_REGISTRY/kea-dhcp4:$VERSION"
    fi
    docker run -d --name pv_dhcp --restart unless-stopped --network host -v "$ETC/kea:$ETC/kea:ro" \
        -v "$LIB/kea:$LIB/kea" -v "$RUN/kea:$RUN/kea" -v "$LOG:$LOG" "$IMAGE_REGISTRY/kea-dhcp4:$VERSION" \
        kea-dhcp4 -c "$CONF"
else
    installed="$(kea-dhcp4 -v)"
    check_version dhcp "$installed"
    stop_pidfile "$RUN/kea/kea-dhcp4.kea-dhcp4.pid" kea-dhcp4
    kea-dhcp4 -t "$CONF" >"$LOG/kea-dhcp4-check.log" 2>&1 || { cat "$LOG/kea-dhcp4-check.log" >&2; die "invalid $CONF"; }
    # Kea keeps its pid (<config name>.kea-dhcp4.pid) and lock files where these point, not under /run.
    export KEA_PIDFILE_DIR="$RUN/kea" KEA_LOCKFILE_DIR="$RUN/kea"
    if [ "$DEBUG" = 1 ]; then
        exec kea-dhcp4 -c "$CONF" -d
    fi
    setsid kea-dhcp4 -c "$CONF" >>"$LOG/kea-dhcp4.out" 2>&1 </dev/null &
    wait_running "$RUN/kea/kea-dhcp4.kea-dhcp4.pid" kea-dhcp4
fi
record_version dhcp "$VERSION"
echo "dhcp $VERSION started ($RUNTIME)"
