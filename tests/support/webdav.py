"""A real WebDAV server (WsgiDAV on cheroot) over HTTPS on 127.0.0.1 and a free port.

Basic authentication for one user; files under ``root``. PUT, MKCOL, MOVE, HEAD, DELETE.

Example::

    with WebDAVServer(root, "ops", "secret", cert, key) as dav:
        dav.port
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.wsgidav_app import WsgiDAVApp

from tests.support.mariadb import free_port


class WebDAVServer:
    def __init__(self, root: Path, user: str, password: str, cert: Path, key: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, free_port()
        app = WsgiDAVApp({
            "host": "127.0.0.1", "port": self.port,
            "provider_mapping": {"/": str(root)},
            "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "verbose": 1, "logging": {"enable": False, "enable_loggers": []},
            "lock_storage": True, "property_manager": True,
        })
        logging.getLogger("wsgidav").setLevel(logging.WARNING)
        self.server = wsgi.Server(("127.0.0.1", self.port), app)
        self.server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
        self.thread = threading.Thread(target=self.server.safe_start, daemon=True)

    def __enter__(self) -> WebDAVServer:
        self.thread.start()
        self.server.ready  # noqa: B018 - set once bound
        import time

        deadline = time.monotonic() + 10
        while not self.server.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.thread.join(10)
