"""The SSH session against a real sshd: closing it leaves nothing behind in the eventlet hub."""
from eventlet.hubs import get_hub, hub

from shared import ssh


def test_a_closed_session_leaves_no_listener_on_its_socket_number(lab):
    connection = ssh.connect(lab.address, lab.port, lab.user, password=lab.user_password)
    transport = connection.client.get_transport()
    number = transport.sock.fileno()
    assert connection.run("echo ready") == (0, "ready")
    assert number in get_hub().listeners[hub.READ]  # the transport thread waits on the socket

    connection.close()

    assert not transport.is_alive()
    # A socket the kernel gives this number next (libpq's, say) must not find the old thread waiting on it.
    assert number not in get_hub().listeners[hub.READ]
