#!/usr/bin/env bash
# Install and start the Docker engine for the docker runtime (production).
# The process runtime needs the component binaries instead: checked by pv_install.py.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "docker $(docker version --format '{{.Server.Version}}') already running"
    exit 0
fi
if command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
elif command -v dnf >/dev/null; then
    dnf install -y -q docker
elif command -v yum >/dev/null; then
    yum install -y -q docker
else
    echo "error: cannot install docker: no known package manager" >&2; exit 1
fi
systemctl enable --now docker
docker info >/dev/null
echo "docker installed"
