#!/bin/sh
# The control-plane image's entrypoint: the first argument picks the role.
#   gateway | consumer | migrate | admin-token | check | health | inventory | provisioner | ... (any service)
# Before a long-running role starts, `scripts.container check` fails the container with one log
# line and a non-zero exit when a setting is missing or the database or broker cannot be reached,
# so the orchestrator restarts it.
set -e
role="${1:-gateway}"
[ "$#" -gt 0 ] && shift
case "$role" in
    gateway)
        python -m scripts.container check
        exec gunicorn -c gateway/gunicorn.conf.py "gateway.app:get_app()" "$@" ;;
    consumer)
        python -m scripts.container check
        exec python -m services.monitoring_ingest.consumer "$@" ;;
    migrate)
        python -m scripts.container check --database-only
        exec python -m shared.migrations "$@" ;;
    admin-token)
        exec python -m services.inventory.bootstrap "$@" ;;
    health|check)
        exec python -m scripts.container "$role" "$@" ;;
    *)
        if [ -f "services/$role/service.py" ]; then
            python -m scripts.container check
            exec python -m "services.$role" "$@"
        fi
        exec "$role" "$@" ;;
esac
