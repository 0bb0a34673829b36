#!/usr/bin/env bash
# Build the local Debian base image (steward-local/debian:bookworm) when no registry can be
# reached: debootstrap --variant=minbase from Debian's mirror, then docker import.
# The root filesystem tarball is kept in $STEWARD_IMAGE_CACHE (default /var/cache/steward-images),
# so a second engine (a lab host's own dockerd) or a later run imports it without debootstrap.
set -euo pipefail
TAG="${STEWARD_BASE_IMAGE:-steward-local/debian:bookworm}"
CACHE="${STEWARD_IMAGE_CACHE:-/var/cache/steward-images}"
TARBALL="$CACHE/debian-bookworm-minbase.tar"
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG present"
    exit 0
fi
mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed" >&2; exit 1; }
    root="$(mktemp -d /var/tmp/steward-rootfs.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    echo "debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Keep images small: no package lists or caches in the base layer.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi
docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$TARBALL" "$TAG" >/dev/null
echo "$TAG imported from $TARBALL"
