"""The one exception tree of pilotwms.

Code inside pilotwms never returns result dictionaries: it returns values or raises a
:class:`PilotWMSError`. The RPC boundary (``core.rpc``) turns an exception into DIRAC's
``{"OK": false, "Message": ..., "Errno": ...}`` envelope and the RPC client turns it back into
the same class, so ``except JobNotFoundError`` works on both sides of the wire.

Each class states:

* ``errno``: the number sent as ``Errno`` (POSIX numbers where one fits, DIRAC's 15xx for the WMS);
* ``strerror``: DIRAC prefixes messages with it: ``"<strerror> ( <errno> : <message>)"``;
* ``http_status``: 200 for ordinary failures (DIRAC replies ``OK: false`` at HTTP 200), 401 for
  authentication and authorisation failures.

Example::

    >>> from core.exceptions import JobNotFoundError, error_class
    >>> err = JobNotFoundError("Job 12 not found")
    >>> err.errno, err.http_status
    (2, 200)
    >>> error_class("JobNotFoundError") is JobNotFoundError
    True
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, ClassVar

_REGISTRY: dict[str, type[PilotWMSError]] = {}


class PilotWMSError(Exception):
    """Base of every error pilotwms raises on purpose.

    ``extra`` holds top-level keys that DIRAC puts beside ``Message`` in the wire reply
    (for example ``InvalidJobIDs``); they are carried across the wire both ways.
    """

    errno: int = _errno.EIO
    strerror: ClassVar[str] = "pilotwms error"
    http_status: ClassVar[int] = 200

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.strerror)
        self.message = message or self.strerror
        self.extra: dict[str, Any] = extra

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def wire_message(self) -> str:
        """The message as DIRAC formats it when an errno is set."""
        return f"{self.strerror} ( {self.errno} : {self.message})"


_REGISTRY["PilotWMSError"] = PilotWMSError


def error_class(name: str) -> type[PilotWMSError]:
    """The exception class called ``name``, or :class:`PilotWMSError` when it is unknown."""
    return _REGISTRY.get(name, PilotWMSError)


def _posix(code: int) -> str:
    return os.strerror(code)


# -- generic ---------------------------------------------------------------------------------


class InvalidArgumentError(PilotWMSError, ValueError):
    """A caller passed a value of the wrong type or out of range."""

    errno = _errno.EINVAL
    strerror = _posix(_errno.EINVAL)


class NotFoundError(PilotWMSError, LookupError):
    """The thing asked for does not exist."""

    errno = _errno.ENOENT
    strerror = _posix(_errno.ENOENT)


class AlreadyExistsError(PilotWMSError):
    """The thing to create exists already."""

    errno = _errno.EEXIST
    strerror = _posix(_errno.EEXIST)


class ConfigError(PilotWMSError):
    """The configuration is missing, malformed or inconsistent; the message names the key."""

    errno = _errno.EINVAL
    strerror = "Configuration error"


class DatabaseError(PilotWMSError):
    """A database call failed for a reason other than bad input."""

    errno = _errno.EIO
    strerror = "Database error"


class ServiceUnavailableError(PilotWMSError):
    """No server in the URL list answered (client side)."""

    errno = _errno.ECONNREFUSED
    strerror = "Service unavailable"


class MethodNotFoundError(PilotWMSError):
    """The service has no method of that name (HTTP 501)."""

    errno = _errno.ENOSYS
    strerror = "Method not implemented"
    http_status = 501


class BadRequestError(PilotWMSError):
    """The request itself is malformed: no ``method``, undecodable ``args`` (HTTP 400)."""

    errno = _errno.EINVAL
    strerror = "Bad request"
    http_status = 400


# -- security --------------------------------------------------------------------------------


class NotAuthenticatedError(PilotWMSError):
    """No valid credential came with the request (HTTP 401)."""

    errno = _errno.EACCES
    strerror = "Not authenticated"
    http_status = 401


class NotAuthorizedError(PilotWMSError):
    """The caller is known but lacks the rights for this call (HTTP 401, as DIRAC does)."""

    errno = _errno.EPERM
    strerror = "Unauthorized query"
    http_status = 401


class NotAllowedError(PilotWMSError):
    """The operation is not offered here (e.g. a write to a read-only view); the message says
    what to do instead."""

    errno = _errno.EPERM
    strerror = "Operation not permitted"


class CredentialError(PilotWMSError):
    """A certificate, proxy, key or token cannot be read, made or verified."""

    errno = _errno.EACCES
    strerror = "Credential error"


class SandboxTooBigError(InvalidArgumentError):
    """A sandbox exceeds the store's ``MaxSizeMiB``; the message is DIRAC's."""

    errno = _errno.EFBIG
    strerror = os.strerror(_errno.EFBIG)


class HashMismatchError(InvalidArgumentError):
    """The received bytes do not have the md5 the client named them by."""


# -- workload management (DIRAC's errnos) ---------------------------------------------------------


class InvalidJDLError(InvalidArgumentError):
    """The job description is malformed; the message names the attribute or position."""

    errno = 1501
    strerror = "Invalid job description"


class JobSubmissionError(PilotWMSError):
    """The job could not be submitted."""

    errno = 1503
    strerror = "Job submission error"


class JobManagementError(PilotWMSError):
    """Some of the jobs of a kill/delete/reschedule could not be handled; the extra keys
    ``InvalidJobIDs``, ``NonauthorizedJobIDs`` and ``FailedJobIDs`` say which."""

    errno = 1502
    strerror = "Job management error"


class JobNotFoundError(NotFoundError):
    """No job with that ID."""


class InvalidTransitionError(PilotWMSError):
    """A job status change that DIRAC's state machine refuses."""

    errno = 1507
    strerror = "Job status error"


class NoMatchError(PilotWMSError):
    """No waiting job fits the resource that asked for one."""

    errno = 1510
    strerror = "No match found"


class WrongPilotVersionError(PilotWMSError):
    """The pilot's version is not one the server accepts."""

    errno = 1511
    strerror = "Pilot version does not match"


# -- faults (docs/reliability.md) --------------------------------------------------------------


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached (down, restarting, connection lost mid-request). The
    request's transaction did not commit; the client may retry (HTTP 503, ``Retry-After``)."""

    errno = _errno.EAGAIN
    strerror = "Database unavailable"
    http_status = 503


class ServerBusyError(PilotWMSError):
    """The server process already serves its ``Server.MaxCallsInFlight`` calls: this one was
    refused before anything was done (HTTP 503, ``Retry-After``); the client tries another
    server, then again."""

    errno = _errno.EBUSY
    strerror = "Server busy"
    http_status = 503


class StorageFullError(PilotWMSError):
    """A file system of the server is full (or over quota): nothing of the request was kept."""

    errno = _errno.ENOSPC
    strerror = os.strerror(_errno.ENOSPC)


class JobNotActiveError(PilotWMSError):
    """A pilot reports on a job that is no longer its own (stalled and failed or rescheduled
    meanwhile, killed, or matched again): the report is refused and the pilot should stop the
    payload (DIRAC's EWMSSTATUS)."""

    errno = 1505
    strerror = "Job status error"
