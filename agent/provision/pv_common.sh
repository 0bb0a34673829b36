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
# docker or process, as pv_install.py wrote it; "none" before an install (nothing of ours runs).
RUNTIME="$(cat "$ETC/runtime" 2>/dev/null || echo none)"
IMAGE_REGISTRY="${STEWARD_IMAGE_REGISTRY:-registry.steward.local}"
# The docker runtime's containers carry this label, and only containers with it are ever removed:
# another install's (another prefix) or the operator's own containers on the same engine are not ours.
OWNER_LABEL="steward.prefix=${PREFIX:-/}"

die() { echo "error: $*" >&2; exit 1; }

# script_help USAGE: the usage line, then the script's header comment (its lines 2.. up to the first
# line that is not a comment), on stdout.
script_help() {
    echo "usage: $1"
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

# help_only USAGE ARGS...: -h/--help prints help and exits 0 before anything is touched; any other
# argument is refused (these scripts take none).
help_only() {
    local usage="$1"; shift
    case "${1:-}" in
        "") return 0 ;;
        -h|--help) script_help "$usage"; exit 0 ;;
        *) echo "usage: $usage   (unknown argument: $1)" >&2; exit 2 ;;
    esac
}

START_USAGE="$(basename "$0") -v|--version VERSION [-b|--bash] [-h|--help]   (-b: a debug shell in the container, or the daemon in the foreground)"

parse_start_args() {
    VERSION="" DEBUG=0
    while [ $# -gt 0 ]; do
        case "$1" in
            -v|--version) [ $# -ge 2 ] || { echo "usage: $START_USAGE" >&2; exit 2; }; VERSION="$2"; shift ;;
            --version=*) VERSION="${1#--version=}" ;;
            -b|--bash) DEBUG=1 ;;
            -h|--help) script_help "$START_USAGE"; exit 0 ;;
            *) echo "usage: $START_USAGE   (unknown argument: $1)" >&2; exit 2 ;;
        esac
        shift
    done
    [ -n "$VERSION" ] || { echo "usage: $START_USAGE   (-v/--version VERSION is required)" >&2; exit 2; }
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

# stop_pidfile FILE NAME : TERM, wait, then KILL; quiet when nothing runs. STOPPED=1 when it stopped one.
stop_pidfile() {
    local pidfile="$1" name="$2" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        echo "$name stopped (pid $pid)"
        STOPPED=1
    fi
    rm -f "$pidfile"
}

# stopped_message COMPONENT: what a stop script did, as it happened.
stopped_message() {
    if [ "${STOPPED:-0}" = 1 ]; then echo "$1 stopped"; else echo "$1 was not running"; fi
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

# dnstap_socket CONF: the unix socket knot.conf sends dnstap to (the agent's reader).
dnstap_socket() {
    sed -n 's/^ *sink: *"unix:\(.*\)"/\1/p' "$1" | head -1
}

# agent_runs: the monitor component (the agent's statistics, which read dnstap) runs.
agent_runs() {
    local pid
    pid="$(cat "$RUN/agent.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# wait_dnstap_reader SOCKET: before knotd starts, until the running agent's reader listens on SOCKET.
# knotd connects its writer once at start (then only every few seconds): a reader not yet there
# means the first queries are answered and never counted.
wait_dnstap_reader() {
    agent_runs || { echo "dnstap: the agent does not run; queries are counted once it does"; return 0; }
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    # DNS matters more than its statistics: start anyway, and say so.
    echo "warning: the agent runs but its dnstap reader $1 is not there after 10 s; queries may go uncounted"
}

# wait_dnstap_writer SOCKET: after knotd started, until its writer is connected to the reader (a
# connected unix socket bound to SOCKET), so that the first query it answers is counted.
wait_dnstap_writer() {
    agent_runs || return 0
    for _ in $(seq 100); do
        if awk -v path="$1" '$8 == path && $6 == "03" { found = 1 } END { exit !found }' /proc/net/unix; then
            echo "dnstap: knotd's writer is connected to the agent"
            return 0
        fi
        sleep 0.1
    done
    echo "warning: knotd's dnstap writer did not connect to $1 within 10 s; queries may go uncounted"
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

# container_name COMPONENT: pv_<component> for the install at /, suffixed for any other prefix.
container_name() {
    if [ -z "$PREFIX" ]; then echo "pv_$1"; else echo "pv_$1-$(printf '%s' "$PREFIX" | sha256sum | cut -c1-8)"; fi
}

# docker_stop NAME: remove our container of that name; leave alone whatever is not ours.
docker_stop() {
    local ids
    ids="$(docker ps -aq --filter "name=^/$1\$" --filter "label=$OWNER_LABEL")" || die "the Docker engine does not answer"
    [ -n "$ids" ] || return 0
    # SIGTERM first, as the process runtime does: knotd and kea remove their pid and socket files.
    docker stop -t 10 $ids >/dev/null || true
    docker rm -f $ids >/dev/null && { echo "$1 container removed"; STOPPED=1; }
}

# docker_image COMPONENT REPOSITORY: the image to run at VERSION. A configuration release that
# the updater unpacked runs on the image the component was first started with (the binaries stay
# Debian's); any other VERSION names an image on this engine, <registry>/<repository>:<VERSION>.
docker_image() {
    local component="$1" image recorded="$ETC/images/$1"
    if [ -d "$PREFIX/provision/versions/$component/$VERSION" ] && [ -s "$recorded" ]; then
        STEWARD_PREFIX="$PREFIX/" python3 "$PREFIX/opt/steward/pv_update.py" activate "$component" "$VERSION" >&2
        cat "$recorded"
        return 0
    fi
    image="$IMAGE_REGISTRY/$2:$VERSION"
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image is not on this server's Docker engine"
    mkdir -p "$ETC/images"
    echo "$image" > "$recorded"
    echo "$image"
}

# docker_running NAME: the container started and stays up (a bad configuration exits at once).
docker_running() {
    local state
    for _ in $(seq 20); do
        state="$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$1" 2>/dev/null || true)"
        [ "$state" = "running 0" ] || break
        sleep 0.1
    done
    [ "$state" = "running 0" ] || { docker logs --tail 20 "$1" >&2 || true; die "$1 did not stay running ($state)"; }
    echo "$1 running (container $(docker inspect -f '{{.Id}}' "$1" | cut -c1-12))"
}
