"""The broker as the tests see it: queue depths as RabbitMQ has them now, and connections cut on purpose.

rabbitmqctl, not the management API: the API's figures are sampled every few seconds.
"""
import subprocess

from kombu import Connection


def _vhost(settings):
    return Connection(settings.amqp_uri).virtual_host


def queue_depth(settings, queue):
    """(ready, unacknowledged) messages of ``queue`` in the tests' vhost."""
    listing = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", _vhost(settings), "name", "messages_ready",
                              "messages_unacknowledged"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        name, *counts = line.split("\t")
        if name == queue:
            return tuple(int(count) for count in counts)
    raise AssertionError(f"no queue {queue} in vhost {_vhost(settings)}")


def close_connections(settings, connection_name):
    """Close every connection of the tests' vhost whose client calls itself ``connection_name``;
    returns how many (list_connections shows every vhost's: only this run's are closed)."""
    vhost = _vhost(settings)
    listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "vhost", "client_properties"],
                             capture_output=True, text=True, check=True).stdout
    connections = [line.split("\t")[0] for line in listing.splitlines()
                   if connection_name in line and line.split("\t")[1] == vhost]
    for connection in connections:
        subprocess.run(["rabbitmqctl", "-q", "close_connection", connection, "test: connection lost"], check=True)
    return len(connections)
