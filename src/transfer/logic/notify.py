"""E-mail notifications of finished transfers, through the configured SMTP server.

``SMTP`` settings (:class:`transfer.settings.SMTPSettings`): host, port, ``TLS`` (``none``,
``starttls``, ``ssl``), an optional login whose password is read from ``PasswordFile``, the
sender ``From``. A notification that cannot be sent is logged and dropped: it never changes
the transfer's outcome.

Example::

    >>> msg = message("pilotwms@example.org", "alice@example.org", 42, "Done", "f.dat",
    ...               "ftp1", 1, None)
    >>> msg["Subject"]
    'pilotwms transfer 42 Done: f.dat -> ftp1'
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from transfer.settings import SMTPSettings

log = logging.getLogger("pilotwms.transfer.notify")


def message(sender: str, to: str, transfer_id: int, status: str, target: str,
            association: str, attempts: int, error: str | None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"pilotwms transfer {transfer_id} {status}: {target} -> {association}"
    lines = [f"Transfer {transfer_id}: {status}", f"File: {target}",
             f"Association: {association}", f"Attempts: {attempts}"]
    if error:
        lines.append(f"Last error: {error}")
    lines.append("")
    lines.append(f"Details: dtransfer -check {transfer_id}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(settings: SMTPSettings, msg: EmailMessage, *,
         ca_dir: str | None = None) -> bool:
    """Send ``msg``; False (logged) when the SMTP server cannot take it."""
    context = ssl.create_default_context()
    if ca_dir:
        context.load_verify_locations(capath=ca_dir)
    try:
        smtp: smtplib.SMTP
        if settings.tls == "ssl":
            smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                    context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with smtp:
            if settings.tls == "starttls":
                smtp.starttls(context=context)
            if settings.user:
                password = settings.password_file.read_text().strip() \
                    if settings.password_file else ""
                smtp.login(settings.user, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("cannot send the notification %r to %s: %s", msg["Subject"], msg["To"],
                    exc)
        return False
    log.info("notification %r sent to %s", msg["Subject"], msg["To"])
    return True
