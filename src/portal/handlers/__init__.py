"""The portal's Tornado routes (see :mod:`portal.handlers.pages` and
:mod:`portal.handlers.api`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tornado.web

from portal.handlers import api, pages

if TYPE_CHECKING:
    from portal.service import PortalService


def routes(portal: PortalService) -> list[Any]:
    kw = {"portal": portal}
    return [
        (r"/portal", tornado.web.RedirectHandler, {"url": "/portal/"}),
        (r"/portal/", pages.IndexHandler, kw),
        (r"/portal/static/(.*)", pages.StaticHandler, {"path": str(pages.STATIC)}),
        (r"/portal/login", pages.LoginHandler, kw),
        (r"/portal/login/callback", pages.CallbackHandler, kw),
        (r"/portal/login/certificate", pages.CertificateLoginHandler, kw),
        (r"/portal/api/logout", pages.LogoutHandler, kw),
        *api.routes(portal),
    ]
