"""Real certificates for unit tests, made by openssl here: TLS code is tested against the
TLS stack's own checks, never against made-up exceptions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA: (certificate, key)."""
    certificate, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(certificate), "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return certificate, key


def serving_directory(directory: Path) -> Path:
    """``directory`` holding ``tls.crt``, ``tls.key`` and ``ca.crt``, as a mounted serving
    certificate Secret does (the certificate is its own CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed(directory, "serving")
    certificate.rename(directory / "tls.crt")
    key.rename(directory / "tls.key")
    shutil.copy(directory / "tls.crt", directory / "ca.crt")
    return directory
