#!/bin/sh
# The default user from RABBITMQ_DEFAULT_USER/PASS (as the official image does), then the broker in the foreground.
set -eu
: "${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS is not set}"
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS}
loopback_users = none
CONF
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
exec runuser -u rabbitmq -- rabbitmq-server
