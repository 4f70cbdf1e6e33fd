"""Content credentials of one asset, read from its C2PA manifest store: what imgprov stores and reports.

Nothing here loads the c2pa library, so credentials stored in an index can be rebuilt (`from_json`)
and shown without it. Field names in `to_json` follow the C2PA JSON of the c2pa SDK where one exists
(`softwareAgent`, `digitalSourceType`, `active_manifest`, `instance_id`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum


class CredentialState(StrEnum):
    """How far an asset's credentials can be believed, strongest first.

    TRUSTED: every check passed and the signer chains to a trust anchor the caller configured.
    VALID_UNTRUSTED: every integrity and signature check passed, but no configured trust anchor vouches
        for the signer (a self-signed test chain, or any signer when no anchors are configured).
    INVALID: a check failed (content or manifest changed after signing, bad or expired certificate,
        unreadable manifest): the claims must not be believed.
    UNVERIFIED: credentials are present or referenced but could not be checked here (remote manifest,
        unsupported container, verification timed out, asset too large).
    """

    TRUSTED = "trusted"
    VALID_UNTRUSTED = "valid-untrusted"
    INVALID = "invalid"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class SignerIdentity:
    """The certificate that signed the active manifest.

    subject, issuer: distinguished names as "CN=..., O=..." in the certificate's order.
    """

    subject: str
    issuer: str
    common_name: str | None = None
    organization: str | None = None
    serial_number: str | None = None
    algorithm: str | None = None
    not_before: str | None = None
    not_after: str | None = None

    def same_entity(self, other: SignerIdentity) -> bool:
        """True when both name the same subject under the same issuer (a renewed certificate counts)."""
        return self.subject == other.subject and self.issuer == other.issuer

    def to_json(self) -> dict:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "common_name": self.common_name,
            "organization": self.organization,
            "serial_number": self.serial_number,
            "algorithm": self.algorithm,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def from_json(cls, doc: dict) -> SignerIdentity:
        return cls(**{name: doc.get(name) for name in _SIGNER_FIELDS})


_SIGNER_FIELDS = (
    "subject",
    "issuer",
    "common_name",
    "organization",
    "serial_number",
    "algorithm",
    "not_before",
    "not_after",
)


@dataclass(frozen=True)
class Action:
    """One entry of a `c2pa.actions` assertion; software_agent is "name version" when both are given."""

    action: str
    when: str | None = None
    software_agent: str | None = None
    digital_source_type: str | None = None
    description: str | None = None

    def to_json(self) -> dict:
        doc = {
            "action": self.action,
            "when": self.when,
            "softwareAgent": self.software_agent,
            "digitalSourceType": self.digital_source_type,
            "description": self.description,
        }
        return {key: value for key, value in doc.items() if value is not None}

    @classmethod
    def from_json(cls, doc: dict) -> Action:
        return cls(
            action=doc["action"],
            when=doc.get("when"),
            software_agent=doc.get("softwareAgent"),
            digital_source_type=doc.get("digitalSourceType"),
            description=doc.get("description"),
        )


@dataclass(frozen=True)
class Ingredient:
    """An ingredient of the active manifest.

    active_manifest: label of the ingredient's own manifest, carried in this store, when it had one.
    hash: base64 sha256 of that manifest as the ingredient assertion records it (None without one).
    validation_errors: failures recorded for the ingredient's manifest, as "code: explanation".
    """

    title: str | None
    format: str | None
    relationship: str | None
    instance_id: str | None = None
    document_id: str | None = None
    active_manifest: str | None = None
    hash: str | None = None
    validation_errors: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "format": self.format,
            "relationship": self.relationship,
            "instance_id": self.instance_id,
            "document_id": self.document_id,
            "active_manifest": self.active_manifest,
            "hash": self.hash,
            "validation_errors": list(self.validation_errors),
        }

    @classmethod
    def from_json(cls, doc: dict) -> Ingredient:
        return cls(
            title=doc.get("title"),
            format=doc.get("format"),
            relationship=doc.get("relationship"),
            instance_id=doc.get("instance_id"),
            document_id=doc.get("document_id"),
            active_manifest=doc.get("active_manifest"),
            hash=doc.get("hash"),
            validation_errors=tuple(doc.get("validation_errors", ())),
        )


@dataclass(frozen=True)
class ContentCredentials:
    """What an asset's C2PA manifest store says, and whether it can be believed.

    active_manifest: label (urn:c2pa:...) of the manifest that describes this asset.
    claim_generator: the software that made the claim, "name version".
    signing_time: RFC 3339 time from a trusted timestamp, None when the signature carries none.
    manifest_labels: every manifest in the store (the asset's history), active first.
    validation_errors: failed checks as "code: explanation", or one "c2pa: ..." line when the store
        could not be read at all.
    trust_list: which trust list vouched for the signer ("user_anchors"), None unless TRUSTED.
    manifest_store: the store as the c2pa SDK reports it (its `Reader.json()` text).
    raw_store: the embedded JUMBF manifest store bytes (readable by c2pa as "application/c2pa");
        empty when the container is not one imgprov extracts it from (see `jumbf`).
    """

    state: CredentialState
    active_manifest: str | None = None
    claim_generator: str | None = None
    title: str | None = None
    format: str | None = None
    instance_id: str | None = None
    signer: SignerIdentity | None = None
    signing_time: str | None = None
    actions: tuple[Action, ...] = ()
    ingredients: tuple[Ingredient, ...] = ()
    manifest_labels: tuple[str, ...] = ()
    validation_errors: tuple[str, ...] = ()
    trust_list: str | None = None
    manifest_store: str = field(default="", repr=False)
    raw_store: bytes = field(default=b"", repr=False)

    @classmethod
    def failed(cls, state: CredentialState, error: str) -> ContentCredentials:
        """Credentials that exist but could not be read or checked: only the state and why."""
        return cls(state=state, validation_errors=(error,))

    @property
    def is_trusted(self) -> bool:
        return self.state is CredentialState.TRUSTED

    @property
    def is_valid(self) -> bool:
        """Integrity and signature verified (trusted or not)."""
        return self.state in (CredentialState.TRUSTED, CredentialState.VALID_UNTRUSTED)

    def summary(self) -> dict:
        """The compact form attached to every search match."""
        return {
            "state": self.state.value,
            "signer": self._signer_name(),
            "issuer": self.signer.issuer if self.signer else None,
            "claim_generator": self.claim_generator,
            "signing_time": self.signing_time,
            "active_manifest": self.active_manifest,
            "actions": [_compact_action(action) for action in self.actions],
            "ingredients": [
                {"title": ingredient.title, "relationship": ingredient.relationship}
                for ingredient in self.ingredients
            ],
            "errors": [error.split(":", 1)[0] for error in self.validation_errors],
        }

    def to_json(self) -> dict:
        """Everything but the raw bytes; `from_json` rebuilds the record from it."""
        return {
            "state": self.state.value,
            "active_manifest": self.active_manifest,
            "claim_generator": self.claim_generator,
            "title": self.title,
            "format": self.format,
            "instance_id": self.instance_id,
            "signer": self.signer.to_json() if self.signer else None,
            "signing_time": self.signing_time,
            "actions": [action.to_json() for action in self.actions],
            "ingredients": [ingredient.to_json() for ingredient in self.ingredients],
            "manifest_labels": list(self.manifest_labels),
            "validation_errors": list(self.validation_errors),
            "trust_list": self.trust_list,
            "raw_store_bytes": len(self.raw_store),
            "manifest_store": json.loads(self.manifest_store) if self.manifest_store else None,
        }

    @classmethod
    def from_json(cls, doc: dict, raw_store: bytes = b"") -> ContentCredentials:
        """Rebuild credentials from `to_json()` output (and the raw store bytes kept beside it)."""
        store = doc.get("manifest_store")
        return cls(
            state=CredentialState(doc["state"]),
            active_manifest=doc.get("active_manifest"),
            claim_generator=doc.get("claim_generator"),
            title=doc.get("title"),
            format=doc.get("format"),
            instance_id=doc.get("instance_id"),
            signer=SignerIdentity.from_json(doc["signer"]) if doc.get("signer") else None,
            signing_time=doc.get("signing_time"),
            actions=tuple(Action.from_json(action) for action in doc.get("actions", ())),
            ingredients=tuple(Ingredient.from_json(item) for item in doc.get("ingredients", ())),
            manifest_labels=tuple(doc.get("manifest_labels", ())),
            validation_errors=tuple(doc.get("validation_errors", ())),
            trust_list=doc.get("trust_list"),
            manifest_store=json.dumps(store) if store is not None else "",
            raw_store=raw_store,
        )

    def _signer_name(self) -> str | None:
        if self.signer is None:
            return None
        return self.signer.common_name or self.signer.organization or self.signer.subject


def _compact_action(action: Action) -> dict:
    doc = {"action": action.action, "when": action.when, "softwareAgent": action.software_agent}
    return {key: value for key, value in doc.items() if value is not None}
