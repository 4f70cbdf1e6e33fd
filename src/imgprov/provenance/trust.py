"""Trust anchors: the certificates an organisation trusts to vouch for C2PA signers.

A signer whose chain ends at one of these anchors is reported TRUSTED; without anchors, a signature
that verifies is never more than VALID_UNTRUSTED. The c2pa SDK is given the anchors as its
`trust.user_anchors` setting and does the chain building itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgprov.errors import ImgprovError

if TYPE_CHECKING:
    from cryptography import x509

MAX_ANCHORS_BYTES = 4 << 20


class TrustAnchorsError(ImgprovError):
    """The trust anchors file is missing, unreadable or holds no PEM certificate."""


@dataclass(frozen=True)
class TrustAnchors:
    """PEM certificates (roots or intermediates) and their subjects ("CN=..., O=..."), for messages."""

    pem: str
    subjects: tuple[str, ...]

    @classmethod
    def from_pem(cls, pem: str | bytes, *, name: str = "<trust anchors>") -> TrustAnchors:
        """Parse PEM text; raise `TrustAnchorsError` unless it holds at least one valid certificate."""
        from cryptography import x509

        data = pem.encode() if isinstance(pem, str) else pem
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise TrustAnchorsError(f"{name}: not PEM certificates ({exc})") from None
        return cls(
            pem=data.decode("ascii", errors="replace"),
            subjects=tuple(distinguished_name(certificate.subject) for certificate in certificates),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TrustAnchors:
        """Read a PEM file of trust anchors."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_ANCHORS_BYTES:
                raise TrustAnchorsError(f"{path}: larger than {MAX_ANCHORS_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise TrustAnchorsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls.from_pem(data, name=str(path))


def distinguished_name(name: x509.Name) -> str:
    """ "CN=..., O=..." in the certificate's own order, as `SignerIdentity` writes names."""
    return ", ".join(f"{attribute.rfc4514_attribute_name}={attribute.value}" for attribute in name)
