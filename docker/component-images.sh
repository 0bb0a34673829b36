#!/usr/bin/env bash
# Build the managed server's component images for the docker runtime from Debian's packages on
# the local base: docker/component-images.sh DNS_VERSION DHCP_VERSION (the versions a first
# install runs, services/provisioner/bundle.py: default_versions). Tags <registry>/knot:<v> and <registry>/kea-dhcp4:<v>;
# a build fails when Debian ships another version.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 2 ] || { echo "usage: $0 DNS_VERSION DHCP_VERSION" >&2; exit 2; }
REGISTRY="${STEWARD_IMAGE_REGISTRY:-registry.steward.local}"
bash docker/base-image.sh >/dev/null
docker build -q --network host --build-arg "VERSION=$1" -t "$REGISTRY/knot:$1" docker/components/knot >/dev/null
docker build -q --network host --build-arg "VERSION=$2" -t "$REGISTRY/kea-dhcp4:$2" docker/components/kea-dhcp4 >/dev/null
echo "$REGISTRY/knot:$1 $REGISTRY/kea-dhcp4:$2"
