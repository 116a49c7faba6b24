"""The transfer system's exceptions (all :class:`~core.exceptions.PilotWMSError`, so they keep
their class across the wire).

Protocol errors say whether trying again can help: :class:`RemoteUnavailableError` (down,
refused, cut, timed out) and :class:`TransferChecksumError` are retried;
:class:`RemoteAuthError` (wrong password or key) and :class:`RemotePermanentError` (target
exists, permission denied, no such directory) fail a transfer at once.

Example::

    >>> RemoteAuthError("x").permanent, RemoteUnavailableError("y").permanent
    (True, False)
"""

from __future__ import annotations

import errno as _errno

from core.exceptions import InvalidArgumentError, PilotWMSError


class TransferError(PilotWMSError):
    """A transfer attempt failed; ``permanent`` says retrying cannot help."""

    errno = _errno.EIO
    strerror = "Transfer error"
    permanent = False


class RemoteUnavailableError(TransferError):
    """The remote host cannot be reached, or the connection broke."""

    errno = _errno.ECONNREFUSED
    strerror = "Remote host unavailable"


class RemoteAuthError(TransferError):
    """The remote host refused the credentials: retrying would only lock the account."""

    errno = _errno.EACCES
    strerror = "Authentication failed"
    permanent = True


class RemotePermanentError(TransferError):
    """The remote side refuses for a reason a retry does not change."""

    errno = _errno.EPERM
    strerror = "Transfer refused"
    permanent = True


class TransferChecksumError(TransferError):
    """What was sent or received does not have the expected checksum or size."""

    errno = _errno.EBADMSG
    strerror = "Checksum mismatch"


class SpoolFullError(PilotWMSError):
    """The server's spool cannot hold the file: nothing was accepted."""

    errno = _errno.ENOSPC
    strerror = "No space left on the spool"


class SecretKeyError(PilotWMSError):
    """The server's secret key file is missing, unreadable, or cannot decrypt a secret."""

    errno = _errno.EACCES
    strerror = "Secret key error"


class BadAssociationError(InvalidArgumentError):
    """An association description is incomplete or wrong; the message names the field."""
