#!/usr/bin/env bash
# Start this machine's Docker engine for the compose and image tests, idempotently.
# Every address it hands out stays in the benchmark range 198.19.0.0/16: the default
# bridge is 198.19.0.1/24 and each compose network gets a /24 from the same pool.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exit 0
fi
command -v dockerd >/dev/null || { echo "error: dockerd is not installed (apt-get install docker.io)" >&2; exit 1; }
mkdir -p /var/log/steward-docker
# A pid file left by an engine that was killed stops a new one from starting.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
fi
nohup dockerd --bip 198.19.0.1/24 --default-address-pool base=198.19.0.0/16,size=24 \
    >>/var/log/steward-docker/dockerd.log 2>&1 </dev/null &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "error: dockerd did not start; see /var/log/steward-docker/dockerd.log" >&2
tail -n 20 /var/log/steward-docker/dockerd.log >&2
exit 1
