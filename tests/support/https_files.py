"""A static HTTPS file server (the standard library's ``http.server``) on 127.0.0.1.

Example::

    with HTTPSFiles(root, cert, key) as web:
        requests.get(f"https://127.0.0.1:{web.port}/f.dat", verify=ca_dir)
"""

from __future__ import annotations

import functools
import http.server
import ssl
import threading
from pathlib import Path
from typing import Any


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


class HTTPSFiles:
    def __init__(self, root: Path, cert: Path, key: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HTTPSFiles:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
