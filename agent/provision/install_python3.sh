#!/usr/bin/env bash
# Make sure python3 (3.8 or later: the agent needs it) is present, installing it with the OS's
# package manager when it is not; ends by printing PVOK, which the provisioner waits for.
source "$(dirname "$(readlink -f "$0")")/pv_common.sh"
help_only "$(basename "$0") [-h|--help]" "$@"
ok() { python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null; }
found() { python3 -V 2>&1 || echo "no python3"; }
if ! ok; then
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
    elif command -v dnf >/dev/null; then
        dnf install -y -q python3
    elif command -v yum >/dev/null; then
        yum install -y -q python3
    else
        die "python3 3.8 or later is required, found $(found), and no known package manager"
    fi
fi
ok || die "python3 3.8 or later is required, found $(found)"
python3 -V
echo PVOK
