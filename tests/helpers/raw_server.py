"""A raw TCP server for tests that play a server's part a real one cannot be made to play (a proxy, a server that
closes mid-call, scripted answers): a free 127.0.0.1 port, each connection handed in turn to ``handle``."""

from __future__ import annotations

import abc
import contextlib
import socket
import threading

from harness import bound_to_a_free_port


class RawServer(abc.ABC):
    """Accepts connections on a thread of its own and serves each, one at a time, with :meth:`handle`; a connection
    that fails (the client closed it, or reset it with an answer unread) ends there, the next is served. The thread
    ends once :meth:`close` closes the listening socket. Subclasses set their own fields before calling
    ``__init__``: a connection may come as soon as it returns."""

    def __init__(self) -> None:
        self.listener = bound_to_a_free_port(socket.create_server)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            with conn, contextlib.suppress(OSError):
                self.handle(conn)

    @abc.abstractmethod
    def handle(self, conn: socket.socket) -> None:
        """Serve one connection (closed after): each kind of server its own."""

    def close(self) -> None:
        self.listener.close()
