#!/usr/bin/env bash
# Start the DNS component (Knot) at VERSION: a container, or knotd as a process.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
parse_start_args "$@"
mkdir -p "$RUN/knot" "$LIB/knot" "$LOG"
CONF="$ETC/knot/knot.conf"
[ -f "$CONF" ] || die "$CONF is missing: run pv_install.py -e configure_components first"

if [ "$RUNTIME" = docker ]; then
    docker_stop pv_dns
    if [ "$DEBUG" = 1 ]; then
        exec docker run --rm -it --network host -v "$ETC/knot:$ETC/knot" -v "$LIB/knot:$LIB/knot" \
            -v "$RUN/knot:$RUN/knot" --entrypoint /bin/sh "$IMAGE_REGISTRY/knot:$VERSION"
    fi
    docker run -d --name pv_dns --restart unless-stopped --network host -v "$ETC/knot:$ETC/knot:ro" \
        -v "$LIB/knot:$LIB/knot" -v "$RUN/knot:$RUN/knot" "$IMAGE_REGISTRY/knot:$VERSION" knotd -c "$CONF"
else
    installed="$(knotd -V | sed -n 's/.*version \([^ ]*\).*/\1/p')"
    check_version dns "$installed"
    stop_pidfile "$RUN/knot/knot.pid" knotd
    if [ "$DEBUG" = 1 ]; then
        exec knotd -c "$CONF" -v
    fi
    knotd -c "$CONF" -d
    wait_running "$RUN/knot/knot.pid" knotd
fi
record_version dns "$VERSION"
echo "dns $VERSION started ($RUNTIME)"
