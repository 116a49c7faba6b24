"""A TCP proxy on 127.0.0.1 that injects network faults in front of a real server.

* ``cut_after=N``: the next ``cuts`` connections are closed (both ways) once N bytes went
  through them client -> server (a connection cut mid-transfer);
* ``rate=B``: every connection forwards at most B bytes/s each way (slow links);
* :meth:`down` / :meth:`up`: stop listening (connections are refused) and listen again on the
  same port (a host that is down, then back).

Example::

    proxy = FaultProxy(("127.0.0.1", sshd.port)).start()
    proxy.cut_after, proxy.cuts = 200_000, 1      # the next connection breaks after 200 kB
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from tests.support.mariadb import free_port


class FaultProxy:
    def __init__(self, target: tuple[str, int], *, rate: float | None = None) -> None:
        self.target = target
        self.port = free_port()
        self.rate = rate
        self.cut_after: int | None = None
        self.cuts = 0
        self.connections = 0
        self.cut_count = 0
        self._listener: socket.socket | None = None
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> FaultProxy:
        self.up()
        return self

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and drop every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept() (close alone does not on Linux)
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for sock in list(self._socks):
                self._close(sock)

    def stop(self) -> None:
        self._stopped = True
        self.down()

    def _close(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        self._socks.discard(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                limit = None
                if self.cut_after is not None and self.cuts > 0:
                    self.cuts -= 1
                    limit = self.cut_after
                self._socks.update((client, upstream))
            pair: dict[str, Any] = {"limit": limit, "sent": 0}
            for src, dst, counted in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, counted, pair),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool,
              pair: dict[str, Any]) -> None:
        started = time.monotonic()
        moved = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted and pair["limit"] is not None:
                    room = pair["limit"] - pair["sent"]
                    if len(data) >= room:
                        dst.sendall(data[:max(room, 0)])
                        self.cut_count += 1
                        break
                    pair["sent"] += len(data)
                if self.rate:
                    moved += len(data)
                    ahead = moved / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._close(src)
            self._close(dst)
