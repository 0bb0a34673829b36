#!/usr/bin/env bash
# Make sure python3 (3.7 or later) is present, installing it with the OS's package
# manager when it is not; ends by printing PVOK, which the provisioner waits for.
set -euo pipefail
ok() { python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 7) else 1)' 2>/dev/null; }
if ! ok; then
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
    elif command -v dnf >/dev/null; then
        dnf install -y -q python3
    elif command -v yum >/dev/null; then
        yum install -y -q python3
    else
        echo "error: no python3 and no known package manager" >&2; exit 1
    fi
fi
ok || { echo "error: python3 3.7 or later is required, found $(python3 -V 2>&1)" >&2; exit 1; }
python3 -V
echo PVOK
