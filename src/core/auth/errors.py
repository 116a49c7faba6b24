"""OAuth2 errors (RFC 6749 section 5.2, RFC 8628 section 3.5) in the one exception tree.

Example::

    >>> err = AuthServerError("authorization_pending", "the user has not answered yet")
    >>> err.body(), err.status
    ({'error': 'authorization_pending', 'error_description': 'the user has not answered yet'}, 400)
"""

from __future__ import annotations

from typing import Any

from core.exceptions import PilotWMSError


class AuthServerError(PilotWMSError):
    """``error`` is the RFC code (``invalid_grant``, ``slow_down``...); ``status`` the HTTP one
    (400, or 401 for ``invalid_client``/``invalid_token``)."""

    strerror = "OAuth2 error"

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status or (401 if error in ("invalid_client", "invalid_token") else 400)

    def body(self) -> dict[str, Any]:
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out
