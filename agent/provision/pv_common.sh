# Sourced by the start/stop scripts: one root prefix, the runtime, and the
# record of running versions that the agent reports in its heartbeat.
set -euo pipefail

PREFIX="${STEWARD_PREFIX:-/}"
PREFIX="${PREFIX%/}"
ETC="$PREFIX/etc/steward"
RUN="$PREFIX/run/steward"
LIB="$PREFIX/var/lib/steward"
LOG="$PREFIX/var/log/steward"
STATE_FILE="$PREFIX/provision/state/components.json"
RUNTIME="$(cat "$ETC/runtime" 2>/dev/null || echo docker)"
IMAGE_REGISTRY="${STEWARD_IMAGE_REGISTRY:-registry.steward.local}"

die() { echo "error: $*" >&2; exit 1; }

parse_start_args() {
    VERSION="" DEBUG=0
    OPTIND=1
    while getopts "v:bh" opt; do
        case "$opt" in
            v) VERSION="$OPTARG" ;;
            b) DEBUG=1 ;;
            *) echo "usage: $0 -v VERSION [-b]   (-b: debug shell / foreground)"; exit 2 ;;
        esac
    done
    [ -n "$VERSION" ] || die "-v VERSION is required"
}

# record_version COMPONENT VERSION|"" : "" removes the component (stopped).
record_version() {
    mkdir -p "$(dirname "$STATE_FILE")"
    python3 - "$STATE_FILE" "$1" "$2" <<'PY'
import json, os, sys
path, component, version = sys.argv[1:4]
try:
    with open(path) as f:
        state = json.load(f)
except (OSError, ValueError):
    state = {}
if version:
    state[component] = version
else:
    state.pop(component, None)
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(state, f, sort_keys=True)
os.replace(tmp, path)
PY
}

# stop_pidfile FILE NAME : TERM, wait, then KILL; quiet when nothing runs.
stop_pidfile() {
    local pidfile="$1" name="$2" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        echo "$name stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}

# wait_pid FILE NAME : the process wrote its pid file and still runs.
wait_running() {
    local pidfile="$1" name="$2" pid
    for _ in $(seq 50); do
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$name running (pid $pid)"; return 0; fi
        sleep 0.1
    done
    die "$name did not start; see $LOG"
}

# check_version COMPONENT INSTALLED: VERSION is either a configuration release the updater
# unpacked (provision/versions/<component>/<VERSION>, put in place by pv_update.py activate)
# or, for a first install, the version of the component's own binaries.
check_version() {
    local component="$1" installed="$2"
    if [ -d "$PREFIX/provision/versions/$component/$VERSION" ] && [ -f "$PREFIX/opt/steward/pv_update.py" ]; then
        STEWARD_PREFIX="$PREFIX/" python3 "$PREFIX/opt/steward/pv_update.py" activate "$component" "$VERSION"
        return 0
    fi
    [ "$installed" = "$VERSION" ] || die "$component $VERSION wanted but $installed is installed ($RUNTIME runtime)"
}

docker_stop() {
    docker rm -f "$1" >/dev/null 2>&1 && echo "$1 container removed" || true
}
