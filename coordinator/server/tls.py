"""TLS for a coordinator node: its HTTP API and its links to the other nodes.

One certificate and key per node, and one CA file that signed every node's certificate.
With them the API serves HTTPS, and the peer links run mutual TLS: a node presents its
certificate on every link it opens or accepts and accepts only peers whose certificate the
CA signed. HMAC framing (`transport.py`) stays on top of TLS: a node must hold the CA's
signature *and* the cluster secret to be heard, so a leaked key or a mis-issued
certificate alone does not let anyone into the consensus (defense in depth), and without
TLS the HMAC is what authenticates peers.

Files are checked when the configuration is read, so that a missing, unreadable,
encrypted or mismatched file stops the node with one line naming the setting and the
file (exit 2), not with an OpenSSL trace on the first connection. Nothing here logs or
echoes what a key file contains.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from coordinator.client import ssl_reason
from coordinator.errors import CoordinatorError

__all__ = ["TlsConfig", "TlsError"]

# Neither side of a link accepts anything older; TLS 1.2 is what every supported OpenSSL
# and every client the project ships (httpx) speaks.
_MIN_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(CoordinatorError):
    """A certificate, key or CA file cannot be used: bad configuration, exit 2."""


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's
    # passphrase, which hangs a node started by a supervisor.
    raise _EncryptedKey


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{setting} {path}: cannot read ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class TlsConfig:
    """The node's certificate and key and the CA that signed every node's certificate."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_settings(cls, cert: str, key: str, ca: str) -> TlsConfig | None:
        """None when no TLS setting is given (plain TCP with HMAC, plain HTTP); all three
        otherwise, checked. A partial setting is refused rather than guessed: a node with a
        certificate but no CA could not verify its peers, and one with a CA but no
        certificate could not be verified by them."""
        given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
        if not any(given.values()):
            return None
        missing = [f"{flag} (PAXLINE_{flag[2:].upper().replace('-', '_')})"
                   for flag, value in given.items() if not value]  # fmt: skip
        if missing:
            raise TlsError(
                "TLS needs --tls-cert, --tls-key and --tls-ca together; missing "
                + ", ".join(missing)
            )
        tls = cls(Path(cert), Path(key), Path(ca))
        tls.check()
        return tls

    def check(self) -> None:
        """Load every file once, raising `TlsError` with a line an operator can act on."""
        cert = _read(self.cert, "--tls-cert")
        if b"-----BEGIN CERTIFICATE-----" not in cert:
            raise TlsError(f"--tls-cert {self.cert}: no PEM certificate in the file")
        key = _read(self.key, "--tls-key")
        if b"PRIVATE KEY-----" not in key:
            raise TlsError(f"--tls-key {self.key}: no PEM private key in the file")
        if b"ENCRYPTED" in key:
            raise TlsError(
                f"--tls-key {self.key}: the key is encrypted; give an unencrypted key file "
                "readable only by the node's user"
            )
        ca = _read(self.ca, "--tls-ca")
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise TlsError(f"--tls-ca {self.ca}: no PEM CA certificate in the file")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert, self.key, password=_no_password)
        except _EncryptedKey:
            raise TlsError(f"--tls-key {self.key}: the key is encrypted") from None
        except ssl.SSLError as exc:
            raise TlsError(
                f"--tls-key {self.key} does not match --tls-cert {self.cert} ({ssl_reason(exc)})"
            ) from None
        try:
            ctx.load_verify_locations(cafile=self.ca)
        except ssl.SSLError as exc:
            raise TlsError(f"--tls-ca {self.ca}: {ssl_reason(exc)}") from None

    def server_context(self, *, verify_clients: bool) -> ssl.SSLContext:
        """Accepting side. `verify_clients`: mutual TLS (the peer links), a connection
        without a certificate the CA signed fails its handshake."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _MIN_VERSION
        ctx.load_cert_chain(self.cert, self.key, password=_no_password)
        if verify_clients:
            ctx.load_verify_locations(cafile=self.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self, *, present_cert: bool) -> ssl.SSLContext:
        """Connecting side: verifies the server's certificate against the CA and its name
        against the host dialled (so a node's certificate must name the host its peers
        and clients use for it). `present_cert`: show our own certificate (peer links)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.minimum_version = _MIN_VERSION
        if present_cert:
            ctx.load_cert_chain(self.cert, self.key, password=_no_password)
        return ctx
