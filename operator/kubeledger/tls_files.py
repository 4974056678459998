"""Checking, while the settings are read, that the TLS files they name can be loaded.

The servers and clients load these files only once they start, after the operator has
joined the election and begun serving its probes: a typo in a path or a Secret mounted
with the wrong keys would then fail half-way through start-up. ``config`` calls these
checks instead, so such a file stops the operator with one message before it does
anything. Secret material is loaded into a throwaway TLS context only, never kept.
"""

from __future__ import annotations

import ssl
from pathlib import Path

# The files of a serving certificate directory (a mounted ``kubernetes.io/tls`` Secret
# with the CA beside it, as cert-manager and the chart write it).
CERTIFICATE, KEY, CA = "tls.crt", "tls.key", "ca.crt"


def check_bundle(path: Path) -> Path:
    """``path`` if it is a CA bundle TLS can load; ValueError says what is wrong."""
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as error:
        raise ValueError(f"the CA bundle {path} holds no certificate TLS can load "
                         f"({error.reason})") from None
    except OSError as error:
        raise ValueError(f"cannot read the CA bundle {path}: {error.strerror}") from None
    return path


def check_serving_directory(directory: Path) -> Path:
    """``directory`` if its certificate, key and CA load; ValueError says which does not."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            directory / CERTIFICATE, directory / KEY)
    except ssl.SSLError as error:
        raise ValueError(f"{directory / CERTIFICATE} and {directory / KEY} are not a "
                         f"certificate and its private key ({error.reason})") from None
    except OSError as error:
        raise ValueError(f"cannot read the serving certificate in {directory}: "
                         f"{error.strerror} ({error.filename or directory})") from None
    check_bundle(directory / CA)
    return directory
