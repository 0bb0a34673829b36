#!/usr/bin/env bash
# Start the DNS component (Knot) at VERSION: a container, or knotd as a process.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
mkdir -p "$RUN/knot" "$LIB/knot" "$LOG"
CONF="$ETC/knot/knot.conf"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e configure_components first"
DNSTAP_SOCKET="$(dnstap_socket "$CONF")"

if [ "$RUNTIME" = docker ]; then
    NAME="$(container_name dns)"
    IMAGE="$(docker_image dns knot)"
    docker_stop "$NAME"
    # Knot's logs and the agent's dnstap socket live on the host, as with the process runtime.
    mkdir -p "$PREFIX/run/steward-agent"
    VOLUMES=(-v "$LIB/knot:$LIB/knot" -v "$RUN/knot:$RUN/knot" -v "$LOG:$LOG" -v "$PREFIX/run/steward-agent:$PREFIX/run/steward-agent")
    if [ "$DEBUG" = 1 ]; then
        exec docker run --rm -it --network host -v "$ETC/knot:$ETC/knot" "${VOLUMES[@]}" --entrypoint /bin/sh "$IMAGE"
    fi
    wait_dnstap_reader "$DNSTAP_SOCKET"
    docker run -d --name "$NAME" --label "$OWNER_LABEL" --restart unless-stopped --network host \
        -v "$ETC/knot:$ETC/knot:ro" "${VOLUMES[@]}" "$IMAGE" knotd -c "$CONF" >/dev/null
    docker_running "$NAME"
    wait_dnstap_writer "$DNSTAP_SOCKET"
elif [ "$RUNTIME" = process ]; then
    installed="$(knotd -V | sed -n 's/.*version \([^ ]*\).*/\1/p')"
    check_version dns "$installed"
    stop_pidfile "$RUN/knot/knot.pid" knotd
    if [ "$DEBUG" = 1 ]; then
        exec knotd -c "$CONF" -v
    fi
    wait_dnstap_reader "$DNSTAP_SOCKET"
    knotd -c "$CONF" -d
    wait_running "$RUN/knot/knot.pid" knotd
    wait_dnstap_writer "$DNSTAP_SOCKET"
else
    die "$ETC/runtime is missing: run pv_install.py first"
fi
record_version dns "$VERSION"
echo "dns $VERSION started ($RUNTIME)"
