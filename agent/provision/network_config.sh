#!/usr/bin/env bash
# Write the addresses the components listen on (every IPv4 address of the host, loopback
# included, so probes on the server itself reach them) to <prefix>/etc/steward/network.env.
# A Docker engine's own bridges (docker0, br-*) are not the server's network: left out.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
PREFIX="${STEWARD_PREFIX:-/}"; PREFIX="${PREFIX%/}"
mkdir -p "$PREFIX/etc/steward"
own="$(ip -o -4 addr show | awk '$2 !~ /^(docker[0-9]+|br-[0-9a-f]+)$/')"
addresses="$(echo "$own" | awk '{split($4, a, "/"); print a[1]}' | sort -u | tr '\n' ' ')"
[ -n "$addresses" ] || { echo "error: no IPv4 address found" >&2; exit 1; }
interfaces="$(echo "$own" | awk '{print $2}' | sort -u | tr '\n' ' ')"
printf 'LISTEN_ADDRESSES="%s"\nDHCP_INTERFACES="%s"\n' "${addresses% }" "${interfaces% }" >"$PREFIX/etc/steward/network.env"
cat "$PREFIX/etc/steward/network.env"
