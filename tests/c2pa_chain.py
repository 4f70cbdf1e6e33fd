"""Signed test assets made locally: a certificate chain, C2PA-signed images and damaged copies of them.

For the tests and the demo only. The chain is a root CA, an intermediate CA and an ES256 end-entity
certificate with the extensions the C2PA certificate profile requires (critical digitalSignature key
usage, an allowed extended key usage, key identifiers). Signing uses no timestamp authority, so it
works without a network; the signature then carries no trusted time.
"""

from __future__ import annotations

import datetime
import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from imgprov.provenance.jumbf import jpeg_app11_payloads, manifest_store_spans
from imgprov.provenance.trust import TrustAnchors

DIGITAL_CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class SigningChain:
    """PEM certificates and the signer's private key.

    certificate_chain: end-entity then intermediate, as a C2PA signer embeds it (the root stays out).
    """

    root_pem: bytes
    intermediate_pem: bytes
    signer_pem: bytes
    private_key_pem: bytes

    @property
    def certificate_chain(self) -> bytes:
        return self.signer_pem + self.intermediate_pem

    def anchors(self) -> TrustAnchors:
        """The root as a trust anchor, as an organisation trusting this chain would configure it."""
        return TrustAnchors.from_pem(self.root_pem)


@dataclass(frozen=True)
class IngredientSource:
    """An asset a signed image is made from; `label` lets actions name it in `ingredientIds`."""

    label: str
    title: str
    data: bytes
    mime_type: str
    relationship: str = "componentOf"


def make_signing_chain(
    common_name: str = "imgprov test signer",
    organization: str = "imgprov test newsroom",
    *,
    valid_days: int = 30,
) -> SigningChain:
    """A fresh root -> intermediate -> end-entity chain, every key ECDSA P-256."""
    now = datetime.datetime.now(datetime.UTC)
    root_key, intermediate_key, signer_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root_name = _name(f"{organization} test root", organization)
    intermediate_name = _name(f"{organization} test intermediate", organization)
    root = _ca_certificate(root_name, root_key, root_name, root_key, now, valid_days, path_length=1)
    intermediate = _ca_certificate(
        intermediate_name, intermediate_key, root_name, root_key, now, valid_days, path_length=0
    )
    signer = _signer_certificate(
        _name(common_name, organization), signer_key, intermediate_name, intermediate_key, now, valid_days
    )
    return SigningChain(
        root_pem=_pem(root),
        intermediate_pem=_pem(intermediate),
        signer_pem=_pem(signer),
        private_key_pem=signer_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def created_action(software_agent: str, when: str | None = None) -> dict:
    """A `c2pa.created` action for a digital capture; `when` defaults to now (RFC 3339)."""
    return _action("c2pa.created", software_agent, when, digitalSourceType=DIGITAL_CAPTURE)


def edited_action(software_agent: str, description: str | None = None, when: str | None = None) -> dict:
    """A `c2pa.edited` action."""
    extra = {"description": description} if description else {}
    return _action("c2pa.edited", software_agent, when, **extra)


def opened_action(ingredient_label: str) -> dict:
    """A `c2pa.opened` action: the asset starts from its parentOf ingredient."""
    return {"action": "c2pa.opened", "parameters": {"ingredientIds": [ingredient_label]}}


def placed_action(ingredient_label: str) -> dict:
    """A `c2pa.placed` action: a componentOf ingredient was placed into the asset."""
    return {"action": "c2pa.placed", "parameters": {"ingredientIds": [ingredient_label]}}


def sign_image(
    data: bytes,
    mime_type: str,
    chain: SigningChain,
    *,
    title: str,
    actions: Sequence[dict],
    ingredients: Sequence[IngredientSource] = (),
    claim_generator: str = "imgprov-testing",
    remote_url: str | None = None,
) -> bytes:
    """The image with an embedded manifest signed by `chain` (ES256, no timestamp, no thumbnail).

    remote_url: embed no manifest, only a reference to one at this URL (nothing is published there).
    """
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": claim_generator, "version": "1.0"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": list(actions)}}],
    }
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    with c2pa.Builder(manifest, context=context) as builder:
        for ingredient in ingredients:
            builder.add_ingredient(
                {
                    "title": ingredient.title,
                    "relationship": ingredient.relationship,
                    "label": ingredient.label,
                },
                ingredient.mime_type,
                io.BytesIO(ingredient.data),
            )
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(
                c2pa.C2paSigningAlg.ES256, chain.certificate_chain, chain.private_key_pem, None
            )
        )
        with signer:
            signed = io.BytesIO()
            builder.sign(signer, mime_type, io.BytesIO(data), signed)
    return signed.getvalue()


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Encode a Pillow image with no metadata at all."""
    out = io.BytesIO()
    image.convert("RGB").save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def reencoded(data: bytes, fmt: str = "JPEG", quality: int = 85) -> bytes:
    """Decode and encode again, as a sharing platform does: every manifest and metadata block is gone."""
    return encode(Image.open(io.BytesIO(data)), fmt, quality)


def stripped(data: bytes) -> bytes:
    """The same bytes without the embedded manifest store (JPEG APP11 segments or the PNG caBX chunk)."""
    if data.startswith(_PNG_SIGNATURE):
        return _PNG_SIGNATURE + b"".join(
            data[start:end] for kind, start, end in _png_chunks(data) if kind != b"caBX"
        )
    spans = manifest_store_spans(data)
    if not data.startswith(b"\xff\xd8") or not spans:
        raise ValueError("no embedded JPEG or PNG manifest store to strip")
    segments = [
        (payload_start - 4, payload_end)
        for payload_start, payload_end in jpeg_app11_payloads(data)
        if any(payload_start <= start < payload_end for start, _ in spans)
    ]
    kept, position = [], 0
    for start, end in segments:
        kept.append(data[position:start])
        position = end
    return b"".join(kept) + data[position:]


def tampered_pixels(data: bytes) -> bytes:
    """Change one byte of the compressed image data after signing (JPEG scan or PNG IDAT)."""
    if data.startswith(_PNG_SIGNATURE):
        _, start, end = next(chunk for chunk in _png_chunks(data) if chunk[0] == b"IDAT")
        return _with_png_crcs(_flipped(data, (start + 8 + end - 4) // 2))
    scan = data.rfind(b"\xff\xda")
    if not data.startswith(b"\xff\xd8") or scan < 0:
        raise ValueError("not a JPEG or PNG")
    position = (scan + len(data)) // 2
    while data[position - 1] == 0xFF or data[position] in (0xFF, 0xEF):
        position += 1
    return _flipped(data, position, mask=0x10)


def tampered_manifest_signature(data: bytes) -> bytes:
    """Change the last byte of the manifest store: the end of the active manifest's claim signature."""
    spans = manifest_store_spans(data)
    if not spans:
        raise ValueError("no embedded manifest store")
    return _with_png_crcs(_flipped(data, spans[-1][1] - 1))


def tampered_manifest_text(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace `old` by `new` (same length) inside the manifest store, e.g. a software agent's name."""
    if len(old) != len(new):
        raise ValueError("the replacement must keep the length")
    for start, end in manifest_store_spans(data):
        found = data.find(old, start, end)
        if found >= 0:
            return _with_png_crcs(data[:found] + new + data[found + len(old) :])
    raise ValueError(f"{old!r} is not in the manifest store")


def _flipped(data: bytes, position: int, mask: int = 0xFF) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk, end past its CRC."""
    chunks, position = [], len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 12 + length
        chunks.append((data[position + 4 : position + 8], position, end))
        position = end
    return chunks


def _with_png_crcs(data: bytes) -> bytes:
    """Recompute every PNG chunk CRC, so a change reads as changed content, not a corrupt file."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    parts = [_PNG_SIGNATURE]
    for _, start, end in _png_chunks(data):
        body = data[start + 4 : end - 4]
        parts.append(data[start : start + 4] + body + struct.pack(">I", zlib.crc32(body)))
    return b"".join(parts)


def _action(name: str, software_agent: str, when: str | None, **extra: str) -> dict:
    when = when or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"action": name, "when": when, "softwareAgent": {"name": software_agent}, **extra}


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _validity(builder: x509.CertificateBuilder, now: datetime.datetime, days: int) -> x509.CertificateBuilder:
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=days)
    )


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    days: int,
    *,
    path_length: int,
) -> x509.Certificate:
    builder = (
        _validity(x509.CertificateBuilder(), now, days)
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(certificate_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _signer_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    days: int,
) -> x509.Certificate:
    return (
        _validity(x509.CertificateBuilder(), now, days)
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _key_usage(*, certificate_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_sign,
        crl_sign=certificate_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)
