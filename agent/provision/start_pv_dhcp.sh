#!/usr/bin/env bash
# Start the DHCP component (Kea DHCPv4) at VERSION: a container, or kea-dhcp4 as a process.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
mkdir -p "$RUN/kea" "$LIB/kea" "$LOG"
CONF="$ETC/kea/kea-dhcp4.json"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e configure_components first"

if [ "$RUNTIME" = docker ]; then
    NAME="$(container_name dhcp)"
    IMAGE="$(docker_image dhcp kea-dhcp4)"
    docker_stop "$NAME"
    VOLUMES=(-v "$LIB/kea:$LIB/kea" -v "$RUN/kea:$RUN/kea" -v "$LOG:$LOG" -e "KEA_PIDFILE_DIR=$RUN/kea" -e "KEA_LOCKFILE_DIR=$RUN/kea")
    docker run --rm --network host -v "$ETC/kea:$ETC/kea:ro" "${VOLUMES[@]}" "$IMAGE" kea-dhcp4 -t "$CONF" \
        >"$LOG/kea-dhcp4-check.log" 2>&1 || { cat "$LOG/kea-dhcp4-check.log" >&2; die "invalid $CONF"; }
    if [ "$DEBUG" = 1 ]; then
        exec docker run --rm -it --network host -v "$ETC/kea:$ETC/kea" "${VOLUMES[@]}" --entrypoint /bin/sh "$IMAGE"
    fi
    docker run -d --name "$NAME" --label "$OWNER_LABEL" --restart unless-stopped --network host \
        -v "$ETC/kea:$ETC/kea:ro" "${VOLUMES[@]}" "$IMAGE" kea-dhcp4 -c "$CONF" >/dev/null
    docker_running "$NAME"
elif [ "$RUNTIME" = process ]; then
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
else
    die "$ETC/runtime is missing: run pv_install.py first"
fi
record_version dhcp "$VERSION"
echo "dhcp $VERSION started ($RUNTIME)"
