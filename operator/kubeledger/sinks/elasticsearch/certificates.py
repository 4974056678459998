"""Saying plainly that Elasticsearch's certificate was refused, and what to change.

The client reports a refused server certificate as a bare ``TLS error`` whose reason
(``self-signed certificate``, ``unable to get local issuer certificate``, a host name
mismatch) sits in the exceptions it was raised from. The sink and the command line both
turn it into one sentence naming the server, the CA bundle it was checked against and the
setting to change. A refusal is never retried into success by itself: the records wait
in the cluster until the operator runs with the right CA.

The bundle itself is checked while the settings are read (``tls_files``).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def refusal_reason(error: BaseException) -> str | None:
    """Why the server's certificate was refused when ``error`` says so, else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # aiohttp keeps the verifier's error on its own connector error.
        found = getattr(current, "certificate_error", current)
        if isinstance(found, ssl.SSLCertVerificationError):
            return str(found.verify_message or found.reason or found)
        current = current.__cause__ or current.__context__
    # Other TLS failures (a connection cut mid-handshake while the server stops) are not
    # the certificate's fault: they stay connection errors.
    return None


def untrusted(where: str, ca_certs: Path | None, reason: str) -> str:
    """The one line saying that ``where``'s certificate did not verify, and what to do."""
    against = (f"the CA bundle {ca_certs} (ELASTICSEARCH_CA_CERTS)" if ca_certs is not None
               else "the system's trust store (ELASTICSEARCH_CA_CERTS is not set)")
    return (f"Elasticsearch at {where} presented a certificate that {against} does not "
            f"verify ({reason}); set ELASTICSEARCH_CA_CERTS to the CA that signed it")

