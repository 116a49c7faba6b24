"""A real FTP/FTPS server (pyftpdlib) on 127.0.0.1 and a free port, in a thread.

One virtual user with a password and a home directory; with ``cert``/``key`` it is an FTPS
server requiring TLS on the control and data channels (explicit ``AUTH TLS``).

Example::

    with FTPServer(root, "ops", "secret", cert=..., key=...) as ftp:
        ftp.port
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer as _Server

from tests.support.mariadb import free_port


class FTPServer:
    def __init__(self, root: Path, user: str, password: str, *, cert: Path | None = None,
                 key: Path | None = None) -> None:
        self.root, self.user, self.port = root, user, free_port()
        root.mkdir(parents=True, exist_ok=True)
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(root), perm="elradfmwMT")
        attrs: dict[str, Any] = {"authorizer": authorizer, "permit_foreign_addresses": False,
                                 "banner": "pilotwms test ftpd"}
        base: type[FTPHandler] = FTPHandler
        if cert is not None:
            base = TLS_FTPHandler
            attrs.update(certfile=str(cert), keyfile=str(key), tls_control_required=True,
                         tls_data_required=True)
        self.handler = type("Handler", (base,), attrs)
        # a loop of its own: pyftpdlib's default IOLoop is one per process
        self.server = _Server(("127.0.0.1", self.port), self.handler, ioloop=IOLoop())
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"timeout": 0.2, "handle_exit": False},
                                       daemon=True)

    def __enter__(self) -> FTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close_all()
        self.thread.join(10)
