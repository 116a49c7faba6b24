"""The portal's settings: ``Systems.Web.Services.Portal.Options``.

Example::

    >>> s = PortalSettings.from_options({"ClientID": "portal", "SessionHours": 8})
    >>> s.client_id, s.session_seconds
    ('portal', 28800)
    >>> PortalSettings.from_options({"Colour": "red"})
    Traceback (most recent call last):
    ...
    ValueError: unknown portal option(s): Colour
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYSTEM = "Web"

_KEYS = {"ClientID", "ClientSecret", "PublicURL", "SessionHours", "IdleMinutes",
         "CertificateLogin", "TokenLogin", "LoginGroup"}


@dataclass(frozen=True)
class PortalSettings:
    #: the login server's client the portal signs users in through (Auth.Server.Clients)
    client_id: str = "pilotwms-portal"
    client_secret: str | None = None
    #: the portal's public base URL (default: Auth.Signing.Issuer); the OAuth redirect URI is
    #: ``<PublicURL>/portal/login/callback``
    public_url: str | None = None
    #: absolute and idle lifetime of a browser session
    session_seconds: int = 12 * 3600
    idle_seconds: int = 2 * 3600
    #: sign-in methods offered
    certificate_login: bool = True
    token_login: bool = True
    #: group asked for at sign-in (empty: the user's default group)
    login_group: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PortalSettings:
        unknown = sorted(set(options) - _KEYS)
        if unknown:
            raise ValueError(f"unknown portal option(s): {', '.join(unknown)}")

        def number(key: str, default: float, low: float) -> float:
            value = options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise ValueError(f"portal option {key} must be a number >= {low}")
            return float(value)

        def flag(key: str, default: bool) -> bool:
            value = options.get(key, default)
            if not isinstance(value, bool):
                raise ValueError(f"portal option {key} must be true or false")
            return value

        def text(key: str, default: str | None) -> str | None:
            value = options.get(key, default)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"portal option {key} must be text")
            return value or default

        return cls(
            client_id=text("ClientID", cls.client_id) or cls.client_id,
            client_secret=text("ClientSecret", None),
            public_url=(text("PublicURL", None) or "").rstrip("/") or None,
            session_seconds=int(number("SessionHours", 12, 0.1) * 3600),
            idle_seconds=int(number("IdleMinutes", 120, 1) * 60),
            certificate_login=flag("CertificateLogin", True),
            token_login=flag("TokenLogin", True),
            login_group=text("LoginGroup", None),
        )
