#!/bin/sh
# Steward's one entry point for root work by its non-root SSH user. prepare_server.sh wrote this file,
# root-owned at a fixed path, and a sudoers rule that lets that user run it and nothing else as root.
# It runs only code prepare_server.sh approved (@LIB@) and what that code installed (@OPT@);
# every argument it passes on is checked, and the install prefix is fixed here, not taken from the caller.
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STEWARD_PREFIX='@PREFIX@'
export STEWARD_PREFIX
LIB='@LIB@'
OPT='@OPT@'
usage() {
    cat <<USAGE
usage: sudo -n @ENTRY@ COMMAND [ARGS]

  install-python3         make sure python3 3.8 or later is there (prints PVOK)
  install DIR             install from the bundle extracted in DIR: the code approved on this server,
                          the server's own files (manifest.json, config/) from DIR
  uninstall               stop the components and remove the agent (pv_install.py --uninstall)
  update ARGS...          pv_update.py ARGS... (what the updater runs; -h lists them)
  diagnose                pv_diagnose.py
  start|stop COMPONENT [-v VERSION]
                          start_pv_COMPONENT.sh / stop_pv_COMPONENT.sh (dns, dhcp, monitor, backup)
USAGE
}
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || { echo "error: run it through sudo" >&2; exit 1; }
command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    install-python3)
        [ $# -eq 0 ] || { usage >&2; exit 2; }
        exec bash "$LIB/install_python3.sh" ;;
    install)
        [ $# -eq 1 ] || { usage >&2; exit 2; }
        exec python3 -E -s "$LIB/pv_install.py" --prefix "$STEWARD_PREFIX" --from-upload "$1" ;;
    uninstall)
        [ $# -eq 0 ] || { usage >&2; exit 2; }
        if [ ! -e "$OPT/pv_install.py" ]; then
            echo "nothing installed under $STEWARD_PREFIX"
            exit 0
        fi
        exec python3 -E -s "$OPT/pv_install.py" --prefix "$STEWARD_PREFIX" --uninstall ;;
    update)
        exec python3 -E -s "$OPT/pv_update.py" "$@" ;;
    diagnose)
        exec python3 -E -s "$OPT/pv_diagnose.py" "$@" ;;
    start|stop)
        component="${1:-}"
        case "$component" in
            dns|dhcp|monitor|backup) shift ;;
            *) usage >&2; exit 2 ;;
        esac
        exec bash "$OPT/${command}_pv_${component}.sh" "$@" ;;
    *)
        usage >&2; exit 2 ;;
esac
