"""Shared helpers of the certificate tests (test_x509.py, test_ca.py): the credential shape the
fixtures give, and small conversions."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.security.x509 import load_pem_chain

Run = Callable[..., subprocess.CompletedProcess[str]]
CraftCert = Callable[..., x509.Certificate]


class Cred(Protocol):
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def chain_of(cred: Cred) -> list[x509.Certificate]:
    return load_pem_chain(cred.cert_pem)
