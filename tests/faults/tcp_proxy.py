"""A TCP proxy in threads that a test can cut, black-hole and restore: the network faults of
a real dependency (PostgreSQL, S3, SQS) without stopping the shared server behind it."""

from __future__ import annotations

import contextlib
import enum
import socket
import threading

from tests.support.servers import free_port


class Mode(enum.Enum):
    forward = "forward"  # a working network: bytes flow both ways
    refuse = "refuse"  # the server is down: nothing listens, live connections are reset
    blackhole = "blackhole"  # a partition: connections are accepted and nothing ever answers


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream` while in `Mode.forward`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode = Mode.refuse
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()  # every live socket of every connection
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None
        self._trigger: tuple[bytes, Mode] | None = None

    # --- switching faults on and off -------------------------------------------------------

    def forward(self) -> None:
        """Restore the network: new connections reach the server (connections opened or
        frozen during a fault are reset, as after a real outage)."""
        self._cut()
        self.mode = Mode.forward
        self._listen()

    def refuse(self) -> None:
        """The server goes away: connections in use are reset and new ones refused."""
        self.mode = Mode.refuse
        self._close_listener()
        self._cut()

    def blackhole(self) -> None:
        """Packets vanish: open connections stop carrying bytes, new ones are accepted and
        then never answered."""
        self.mode = Mode.blackhole
        self._listen()

    def fail_when_sent(self, pattern: bytes, mode: Mode) -> None:
        """Switch to `mode` (refuse or blackhole) the moment a client sends `pattern`, which
        never arrives: a fault at an exact point of a conversation (e.g. when a PostgreSQL
        client sends "rollback")."""
        self._trigger = (pattern, mode)

    def close(self) -> None:
        self.refuse()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    # --- machinery -------------------------------------------------------------------------

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listener.settimeout(0.1)
            self._listener = listener
        self._acceptor = self._spawn(self._accept, listener)

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # stop listening now, even while polled
        if self._acceptor is not None:
            self._acceptor.join(5)  # until then the kernel could still queue connections
        listener.close()

    def _cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _spawn(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return thread

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed under us
                return
            client.settimeout(None)
            self._track(client)
            if self.mode is not Mode.forward:
                continue  # black hole: accepted, held open, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._track(server)
            self._spawn(self._pump, client, server, True)
            self._spawn(self._pump, server, client, False)

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                trigger = self._trigger
                if from_client and trigger is not None and trigger[0] in data:
                    self._trigger = None
                    if trigger[1] is Mode.refuse:
                        self.refuse()
                        break
                    self.blackhole()
                if self.mode is Mode.forward:
                    target.sendall(data)
                # otherwise the bytes vanish: the peer waits for an answer that never comes
        except OSError:
            pass
        finally:
            if self.mode is Mode.forward:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
