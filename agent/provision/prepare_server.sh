#!/usr/bin/env bash
# Once, as root, before Steward installs with a non-root SSH user: the user and its group, the code
# approved to run as root, its one entry point, the sudoers file, /provision (and the docker group).
set -euo pipefail
HERE="$(dirname "$(readlink -f "$0")")"
usage() {
    cat <<USAGE
usage: sudo bash $(basename "$0") [--user NAME] [--runtime process|docker] [--prefix DIR] [--remove]

Prepares this server, once, so Steward's provisioner and updater can install, update and remove with
NAME (default: the bundle's sudo user), a login without root:
  * the group NAME and the user NAME (made when missing; with --runtime docker, NAME joins "docker",
    which is as good as root: the docker runtime cannot be confined further)
  * <prefix>/usr/local/lib/steward: this bundle's scripts and agent, root-owned, the only code run as root
  * <prefix>/usr/local/sbin/steward-root: the one entry point NAME may run with sudo
  * <prefix>/etc/sudoers.d/steward: "NAME ALL=(root) NOPASSWD: <that entry point>", checked with visudo -c
  * <prefix>/provision, root-owned (NAME reads it)
Run it again from a newer bundle to approve that bundle's scripts; until then an install from it is refused.
--remove takes the entry point, the approved code and the sudoers file away again (not the user).
USAGE
}
for arg in "$@"; do
    case "$arg" in -h|--help) usage; exit 0 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "error: run it as root (sudo bash $(basename "$0") ...)" >&2; exit 1; }
bash "$HERE/install_python3.sh" >/dev/null  # python3 3.8 or later, for pv_install.py and the agent
exec python3 -E -s "$HERE/pv_install.py" --prepare "$@"
