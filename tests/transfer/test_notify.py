"""Notifications through a real SMTP server (aiosmtpd) with STARTTLS and a login."""

from __future__ import annotations

import ssl
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from core.cli.instance import Instance
from tests.support.mariadb import free_port
from tests.support.smtpd import _Sink
from transfer.logic import notify
from transfer.settings import SMTPSettings


def test_starttls_with_login(instance: Instance, tmp_path: Path) -> None:
    host = instance.directory / "host"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(host / "hostcert.pem"), str(host / "hostkey.pem"))
    logins: list[tuple[bytes, bytes]] = []

    def check(server: object, session: object, envelope: object, mechanism: str,
              data: object) -> AuthResult:
        logins.append((data.login, data.password))  # type: ignore[attr-defined]
        return AuthResult(success=data.password == b"smtp-pw")  # type: ignore[attr-defined]

    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=check,
                            auth_require_tls=True)
    controller.start()
    try:
        (tmp_path / "pw").write_text("smtp-pw\n")
        settings = SMTPSettings.model_validate({
            "Host": "127.0.0.1", "Port": port, "TLS": "starttls", "User": "grid",
            "PasswordFile": str(tmp_path / "pw"), "From": "grid@example.org"})
        msg = notify.message("grid@example.org", "ops@example.org", 7, "Failed", "f.dat",
                             "ftp1", 3, "boom")
        assert notify.send(settings, msg, ca_dir=str(instance.ca_dir)) is True
        assert logins == [(b"grid", b"smtp-pw")]
        (got,) = sink.messages
        assert got["Subject"] == "pilotwms transfer 7 Failed: f.dat -> ftp1"
        assert "Last error: boom" in got.get_payload()
        # an untrusted server certificate: not sent, logged, no exception
        empty = tmp_path / "no-ca"
        empty.mkdir()
        assert notify.send(settings, msg, ca_dir=str(empty)) is False
        assert len(sink.messages) == 1
    finally:
        controller.stop()
