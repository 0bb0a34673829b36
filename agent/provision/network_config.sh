#!/usr/bin/env bash
# Write the addresses the components listen on (every IPv4 address of the host, loopback
# included, so probes on the server itself reach them) to <prefix>/etc/steward/network.env.
set -euo pipefail
PREFIX="${STEWARD_PREFIX:-/}"; PREFIX="${PREFIX%/}"
mkdir -p "$PREFIX/etc/steward"
addresses="$(ip -o -4 addr show | awk '{split($4, a, "/"); print a[1]}' | sort -u | tr '\n' ' ')"
[ -n "$addresses" ] || { echo "error: no IPv4 address found" >&2; exit 1; }
interfaces="$(ip -o -4 addr show | awk '{print $2}' | sort -u | tr '\n' ' ')"
printf 'LISTEN_ADDRESSES="%s"\nDHCP_INTERFACES="%s"\n' "${addresses% }" "${interfaces% }" >"$PREFIX/etc/steward/network.env"
cat "$PREFIX/etc/steward/network.env"
