"""psycopg2 under eventlet: a connection whose socket takes the number of one that was
closed under a waiting green thread (what paramiko does to its transport thread) works."""
import os
import socket

import eventlet
import psycopg2
from eventlet.hubs import get_hub, hub


def test_a_new_connection_on_the_number_of_a_socket_closed_under_a_waiting_reader_works(engine):
    probe = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: the next socket gets it
    os.close(probe)
    closed, peer = socket.socketpair()
    assert closed.fileno() == probe

    def read():  # like paramiko's transport thread: a socket error ends it quietly
        try:
            return closed.recv(1)
        except (OSError, EOFError) as exc:
            return exc

    reader = eventlet.spawn(read)
    eventlet.sleep(0)  # the reader now waits: the hub holds its listener on that number
    assert probe in get_hub().listeners[hub.READ]
    closed.close()  # under the reader, as paramiko's Transport.close does

    url = engine.url
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        assert conn.fileno() == probe  # the premise: libpq took the recycled number
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        conn.close()
        peer.close()
    assert isinstance(reader.wait(), (OSError, EOFError))  # the old reader is told its socket is gone
