"""Read and validate the C2PA manifest store of an asset with the c2pa SDK (`c2pa-python`).

`read_manifest` never raises for bad input: no credentials gives None, credentials that cannot be read
or do not verify give a `ContentCredentials` whose state says so. By default the SDK runs in a child
process killed after `timeout_s`, so a hostile file costs bounded time and cannot take the caller down
with it; `timeout_s=None` reads in this process, faster. Files without any manifest store never reach
the SDK. Nothing is fetched from the network: remote manifests, OCSP and timestamp authorities are
left alone, and a remote-only manifest is reported UNVERIFIED.

State mapping (see `CredentialState`), from the SDK's validation state and failure codes:
any failure other than an untrusted signer, or an SDK state other than Valid/Trusted -> INVALID;
SDK state Trusted with no failure, "signingCredential.trusted", and anchors given by the caller ->
TRUSTED; otherwise VALID_UNTRUSTED. So a changed asset or manifest is INVALID whatever the trust
configuration, and only the caller's anchors can make a signer TRUSTED. Failures the SDK records for
an ingredient's own manifest are listed (prefixed "ingredient") and on that ingredient, but leave the
state of the asset's manifest as it is.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from imgprov.provenance.credentials import (
    Action,
    ContentCredentials,
    CredentialState,
    Ingredient,
    SignerIdentity,
)
from imgprov.provenance.jumbf import carries_credentials, extract_manifest_store
from imgprov.provenance.trust import TrustAnchors

DEFAULT_TIMEOUT_S = 20.0
MAX_ASSET_BYTES = 256 << 20
UNTRUSTED_SIGNER_CODES = frozenset({"signingCredential.untrusted", "timeStamp.untrusted"})
TRUSTED_SIGNER_CODE = "signingCredential.trusted"

MIME_TYPES = {
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "jpe": "image/jpeg",
    "mpo": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "dng": "image/dng",
    "jxl": "image/jxl",
}

_WORKER_MODULE = "imgprov.provenance.worker"
_MAX_ERROR_CHARS = 200


def mime_type_for(name: str) -> str | None:
    """The MIME type for a MIME type, a Pillow format name ("JPEG") or a file suffix (".jpg")."""
    key = name.strip().lower()
    if "/" in key:
        return key
    return MIME_TYPES.get(key.removeprefix("."))


def read_manifest(
    data: bytes,
    mime_type: str | None,
    *,
    trust: TrustAnchors | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    sidecar: bytes | None = None,
) -> ContentCredentials | None:
    """The content credentials of an asset's bytes, validated; None when it carries none.

    mime_type: as `mime_type_for` accepts; None lets the SDK detect the container from the bytes.
    trust: the anchors that make a signer TRUSTED; without them a verified signer is VALID_UNTRUSTED.
    timeout_s: run the SDK in a child process killed after this many seconds (UNVERIFIED then);
        None runs it in this process.
    sidecar: a manifest store kept apart from the asset (a .c2pa file), validated against the bytes.
    """
    if sidecar is None and not carries_credentials(data):
        return None
    if len(data) > MAX_ASSET_BYTES:
        return ContentCredentials.failed(
            CredentialState.UNVERIFIED, f"imgprov: {len(data)} bytes exceeds the {MAX_ASSET_BYTES} byte limit"
        )
    mime = mime_type_for(mime_type) if mime_type else None
    if timeout_s is None:
        return read_in_process(data, mime, trust, sidecar)
    return _read_in_child(data, mime, trust, sidecar, timeout_s)


def read_manifest_file(
    path: str | Path, *, trust: TrustAnchors | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> ContentCredentials | None:
    """`read_manifest` of a file, its type taken from the suffix (or detected); None if unreadable."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_ASSET_BYTES:
            return ContentCredentials.failed(CredentialState.UNVERIFIED, f"imgprov: {path} is too large")
        data = path.read_bytes()
    except OSError:
        return None
    return read_manifest(data, mime_type_for(path.suffix), trust=trust, timeout_s=timeout_s)


def read_in_process(
    data: bytes, mime_type: str | None, trust: TrustAnchors | None, sidecar: bytes | None = None
) -> ContentCredentials | None:
    """Run the SDK in this process; every SDK or parsing error becomes a state, never an exception."""
    import c2pa

    try:
        context = c2pa.Context.from_dict(reader_settings(trust))
        reader = c2pa.Reader.try_create(mime_type, io.BytesIO(data), sidecar, context=context)
        if reader is None:
            return None
        with reader:
            store_json = reader.json()
            crjson = _optional_crjson(reader)
    except c2pa.C2paError as exc:
        return _credentials_for_sdk_error(str(exc))
    except Exception as exc:
        return ContentCredentials.failed(CredentialState.INVALID, _short(f"c2pa: unreadable store ({exc})"))
    try:
        raw_store = sidecar or extract_manifest_store(data)
        return credentials_from_store(store_json, crjson, trust is not None, raw_store, mime_type)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return ContentCredentials.failed(CredentialState.INVALID, _short(f"c2pa: malformed store ({exc})"))


def reader_settings(trust: TrustAnchors | None) -> dict:
    """c2pa SDK settings: verify everything, fetch nothing, trust only the caller's anchors."""
    settings: dict = {
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        }
    }
    if trust is not None:
        settings["trust"] = {"user_anchors": trust.pem}
    return settings


def credentials_from_store(
    store_json: str,
    crjson: dict,
    anchors_configured: bool,
    raw_store: bytes = b"",
    asset_format: str | None = None,
) -> ContentCredentials:
    """Build the record from the SDK's `Reader.json()` text and `Reader.crjson()` document.

    asset_format: the MIME type the asset was read as, for manifests that do not record one.
    """
    store = json.loads(store_json)
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    active = manifests.get(label) or {}
    results = store.get("validation_results") or {}
    active_results = results.get("activeManifest") or _legacy_results(store)
    failures = active_results.get("failure") or []
    state = credential_state(
        store.get("validation_state"),
        [item.get("code", "") for item in failures],
        [item.get("code", "") for item in active_results.get("success") or []],
        anchors_configured,
    )
    cr_manifest = _crjson_manifest(crjson, label)
    return ContentCredentials(
        state=state,
        active_manifest=label,
        claim_generator=_claim_generator(active),
        title=active.get("title"),
        format=active.get("format") or asset_format,
        instance_id=active.get("instance_id"),
        signer=_signer(active.get("signature_info") or {}, cr_manifest.get("signature") or {}),
        signing_time=(active.get("signature_info") or {}).get("time"),
        actions=tuple(_actions(active.get("assertions") or [])),
        ingredients=tuple(_ingredients(active.get("ingredients") or [], cr_manifest.get("assertions") or {})),
        manifest_labels=tuple(_manifest_labels(label, manifests)),
        validation_errors=tuple(
            _errors(failures) + _ingredient_errors(results.get("ingredientDeltas") or [])
        ),
        trust_list=results.get("trustListUri") if state is CredentialState.TRUSTED else None,
        manifest_store=json.dumps(store),
        raw_store=raw_store,
    )


def credential_state(
    sdk_state: str | None,
    failure_codes: Iterable[str],
    success_codes: Iterable[str],
    anchors_configured: bool,
) -> CredentialState:
    """Map the SDK's verdict to imgprov's; only an untrusted signer is tolerated below TRUSTED."""
    failures = set(failure_codes)
    if sdk_state not in ("Valid", "Trusted") or failures - UNTRUSTED_SIGNER_CODES:
        return CredentialState.INVALID
    vouched = TRUSTED_SIGNER_CODE in set(success_codes)
    if sdk_state == "Trusted" and anchors_configured and vouched and not failures:
        return CredentialState.TRUSTED
    return CredentialState.VALID_UNTRUSTED


def _read_in_child(
    data: bytes, mime_type: str | None, trust: TrustAnchors | None, sidecar: bytes | None, timeout_s: float
) -> ContentCredentials | None:
    header = {
        "mime_type": mime_type,
        "anchors_pem": trust.pem if trust else None,
        "sidecar": base64.b64encode(sidecar).decode() if sidecar is not None else None,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", _WORKER_MODULE],
            input=json.dumps(header).encode() + b"\n" + data,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ContentCredentials.failed(
            CredentialState.UNVERIFIED, f"imgprov: verification did not finish within {timeout_s:g} s"
        )
    except OSError as exc:
        return ContentCredentials.failed(
            CredentialState.UNVERIFIED, _short(f"imgprov: cannot start verifier ({exc})")
        )
    if done.returncode != 0:
        return ContentCredentials.failed(
            CredentialState.INVALID,
            _short(f"c2pa: verifier failed (exit {done.returncode}) {_last_line(done.stderr)}"),
        )
    return _decode_worker_output(done.stdout)


def _decode_worker_output(stdout: bytes) -> ContentCredentials | None:
    try:
        reply = json.loads(stdout)
        if reply["credentials"] is None:
            return None
        return ContentCredentials.from_json(reply["credentials"], base64.b64decode(reply["raw_store"]))
    except (ValueError, KeyError, TypeError) as exc:
        return ContentCredentials.failed(
            CredentialState.INVALID, _short(f"c2pa: verifier gave no result ({exc})")
        )


def _credentials_for_sdk_error(message: str) -> ContentCredentials | None:
    """SDK errors: no manifest or an unsupported container means none; remote means unverified."""
    kind = message.split(":", 1)[0].strip()
    if kind == "ManifestNotFound":
        return None
    if kind in ("NotSupported", "Remote", "RemoteManifest"):
        return ContentCredentials.failed(CredentialState.UNVERIFIED, _short(f"c2pa: {message}"))
    return ContentCredentials.failed(CredentialState.INVALID, _short(f"c2pa: {message}"))


def _optional_crjson(reader) -> dict:
    """The crJSON form holds the certificate's full subject and issuer; its absence only costs those."""
    try:
        return json.loads(reader.crjson())
    except Exception:
        return {}


def _legacy_results(store: dict) -> dict:
    """Stores without `validation_results` list only failures, as `validation_status`."""
    return {"failure": store.get("validation_status") or [], "success": []}


def _crjson_manifest(crjson: dict, label: str | None) -> dict:
    for manifest in crjson.get("manifests") or []:
        if isinstance(manifest, dict) and manifest.get("label") == label:
            return manifest
    return {}


def _claim_generator(active: dict) -> str | None:
    infos = active.get("claim_generator_info") or []
    if infos and isinstance(infos[0], dict) and infos[0].get("name"):
        return " ".join(str(part) for part in (infos[0]["name"], infos[0].get("version")) if part)
    return active.get("claim_generator")


def _signer(signature_info: dict, cr_signature: dict) -> SignerIdentity | None:
    certificate = cr_signature.get("certificateInfo") or {}
    subject = certificate.get("subject") or {}
    issuer = certificate.get("issuer") or {}
    validity = certificate.get("validity") or {}
    common_name = _first(subject.get("CN")) or signature_info.get("common_name")
    if not (subject or signature_info):
        return None
    return SignerIdentity(
        subject=_distinguished_name(subject) or f"CN={common_name}",
        issuer=_distinguished_name(issuer) or f"O={signature_info.get('issuer')}",
        common_name=common_name,
        organization=_first(subject.get("O")),
        serial_number=certificate.get("serialNumber") or signature_info.get("cert_serial_number"),
        algorithm=(cr_signature.get("algorithm") or signature_info.get("alg") or "").lower() or None,
        not_before=validity.get("notBefore"),
        not_after=validity.get("notAfter"),
    )


def _distinguished_name(parts: dict) -> str:
    return ", ".join(f"{key}={_first(value)}" for key, value in parts.items())


def _first(value) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _actions(assertions: list) -> Iterable[Action]:
    for assertion in assertions:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for entry in (assertion.get("data") or {}).get("actions") or []:
            yield Action(
                action=str(entry.get("action", "")),
                when=entry.get("when"),
                software_agent=_software_agent(entry.get("softwareAgent")),
                digital_source_type=entry.get("digitalSourceType"),
                description=entry.get("description"),
            )


def _software_agent(agent) -> str | None:
    if isinstance(agent, dict):
        return " ".join(str(part) for part in (agent.get("name"), agent.get("version")) if part) or None
    return None if agent is None else str(agent)


def _ingredients(ingredients: list, cr_assertions: dict) -> Iterable[Ingredient]:
    for entry in ingredients:
        recorded = cr_assertions.get(entry.get("label")) or {}
        results = (entry.get("validation_results") or {}).get("activeManifest") or {}
        yield Ingredient(
            title=entry.get("title"),
            format=entry.get("format"),
            relationship=entry.get("relationship"),
            instance_id=entry.get("instance_id"),
            document_id=entry.get("document_id"),
            active_manifest=entry.get("active_manifest"),
            hash=_manifest_hash(recorded),
            validation_errors=tuple(
                error for error in _errors(results.get("failure") or []) if not _is_untrusted_signer(error)
            ),
        )


def _manifest_hash(recorded: dict) -> str | None:
    """Hash of the ingredient's manifest: `activeManifest` (v3) or `c2pa_manifest` (v1, v2)."""
    for key in ("activeManifest", "c2pa_manifest"):
        reference = recorded.get(key)
        if isinstance(reference, dict) and reference.get("hash"):
            return str(reference["hash"]).removeprefix("b64'").removesuffix("'")
    return None


def _manifest_labels(active_label: str | None, manifests: dict) -> list[str]:
    labels = [active_label] if active_label in manifests else []
    return labels + sorted(label for label in manifests if label != active_label)


def _errors(statuses: list) -> list[str]:
    return [
        _short(f"{status.get('code', '?')}: {status.get('explanation', '')}".rstrip(": "))
        for status in statuses
    ]


def _ingredient_errors(deltas: list) -> list[str]:
    errors = []
    for delta in deltas:
        failures = (delta.get("validationDeltas") or {}).get("failure") or []
        errors += [f"ingredient {error}" for error in _errors(failures) if not _is_untrusted_signer(error)]
    return errors


def _is_untrusted_signer(error: str) -> bool:
    return error.split(":", 1)[0] in UNTRUSTED_SIGNER_CODES


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."
