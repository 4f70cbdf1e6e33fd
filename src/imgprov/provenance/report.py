"""The provenance report of one query: a JSON document a newsroom can attach to a fact-check.

It names the query (and its own credentials, if any), every matched original with its credentials
summary, where it appears in the query and what the query's credentials say about it, and a C2PA-style
ingredient list of the originals. `sign_report` turns the same facts into a signed C2PA manifest store
for the query, kept beside it as a sidecar (.c2pa), with the originals as ingredients.
"""

from __future__ import annotations

import base64
import datetime
import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, get_args

from imgprov import __version__
from imgprov.provenance.agreement import compare_credentials
from imgprov.provenance.credentials import ContentCredentials

REPORT_SCHEMA = "imgprov.provenance-report/1"
REPORT_ASSERTION = "org.imgprov.provenance-report"
COMPOSITE_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/composite"
SigningAlgorithm = Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"]
SIGNING_ALGORITHMS: tuple[SigningAlgorithm, ...] = get_args(SigningAlgorithm)


class Relationship(StrEnum):
    """How an original is an ingredient of the query (C2PA's ingredient relationship)."""

    PARENT_OF = "parentOf"
    COMPONENT_OF = "componentOf"


@dataclass(frozen=True)
class MatchedOriginal:
    """An original that content search found in the query, as the caller knows it.

    sha256: hex digest of the original's file bytes.
    relationship: "parentOf" for the original the query was made from (the host), "componentOf" for one
        pasted into it.
    role, regions, score: passed through to the report as given (e.g. "host", `MatchRegion.to_json()`).
    """

    path: str
    sha256: str
    mime_type: str | None
    relationship: Relationship
    credentials: ContentCredentials | None = None
    role: str | None = None
    score: float | None = None
    regions: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        if self.relationship not in tuple(Relationship):
            raise ValueError(
                f"relationship must be one of {', '.join(Relationship)}, not {self.relationship!r}"
            )


@dataclass(frozen=True)
class SigningCredentials:
    """A signer for `sign_report`: PEM certificate chain (end-entity first, no root) and private key.

    timestamp_url: an RFC 3161 timestamp authority; None signs without one (no network needed).
    """

    certificate_chain_pem: bytes
    private_key_pem: bytes
    algorithm: SigningAlgorithm = "es256"
    timestamp_url: str | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}, not {self.algorithm!r}"
            )


def build_report(
    query_name: str,
    query_sha256: str,
    query_credentials: ContentCredentials | None,
    originals: Sequence[MatchedOriginal],
    *,
    generated_at: datetime.datetime | None = None,
) -> dict:
    """The report document: schema, generator, query, matches (best first) and ingredients.

    Raises ValueError when more than one original is "parentOf": an asset has at most one parent.
    """
    _check_single_parent(originals)
    generated_at = generated_at or datetime.datetime.now(datetime.UTC)
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "generator": {"name": "imgprov", "version": __version__},
        "query": {
            "name": query_name,
            "sha256": query_sha256,
            "credentials": query_credentials.summary() if query_credentials else None,
        },
        "matches": [_match_entry(original, query_credentials) for original in originals],
        "ingredients": [ingredient_entry(original) for original in originals],
    }


def ingredient_entry(original: MatchedOriginal) -> dict:
    """A C2PA ingredient for one original, in the field names of the c2pa SDK's ingredient JSON.

    hash: base64 sha256 of the original's bytes (alg "sha256"); instance_id and active_manifest come
    from the original's own manifest when it has one.
    """
    credentials = original.credentials
    return {
        "title": Path(original.path).name,
        "format": original.mime_type,
        "relationship": original.relationship,
        "instance_id": credentials.instance_id if credentials else None,
        "document_id": None,
        "active_manifest": credentials.active_manifest if credentials else None,
        "alg": "sha256",
        "hash": base64.b64encode(bytes.fromhex(original.sha256)).decode(),
    }


def sign_report(
    report: dict,
    query_data: bytes,
    query_mime_type: str,
    originals: Sequence[tuple[MatchedOriginal, bytes]],
    signing: SigningCredentials,
) -> bytes:
    """A signed C2PA manifest store for the query bytes, to keep beside the query as a .c2pa sidecar.

    The originals (with their bytes, so their own manifests come along) are its ingredients, opened or
    placed per relationship; the report itself is the `org.imgprov.provenance-report` assertion.
    Raises `c2pa.C2paError` when the SDK cannot sign (bad key, unsupported query format).
    """
    import c2pa

    _check_single_parent([original for original, _ in originals])
    labels = [f"original-{position}" for position in range(len(originals))]
    manifest = {
        "claim_generator_info": [{"name": "imgprov", "version": __version__}],
        "title": report["query"]["name"] or "query",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": _report_actions(originals, labels)}},
            {"label": REPORT_ASSERTION, "data": report},
        ],
    }
    with c2pa.Builder(manifest) as builder:
        for label, (original, data) in zip(labels, originals, strict=True):
            builder.add_ingredient(
                {"title": Path(original.path).name, "relationship": original.relationship, "label": label},
                original.mime_type or "",
                io.BytesIO(data),
            )
        builder.set_no_embed()
        info = c2pa.C2paSignerInfo(
            signing.algorithm, signing.certificate_chain_pem, signing.private_key_pem, signing.timestamp_url
        )
        with c2pa.Signer.from_info(info) as signer:
            return builder.sign(signer, query_mime_type, io.BytesIO(query_data), io.BytesIO())


def _report_actions(originals: Sequence[tuple[MatchedOriginal, bytes]], labels: list[str]) -> list[dict]:
    """c2pa.opened for the parent (or c2pa.created for a composite without one), c2pa.placed per component."""
    note = "identified by imgprov content search"
    relationships = {
        label: original.relationship for label, (original, _) in zip(labels, originals, strict=True)
    }
    parents = [label for label in labels if relationships[label] == Relationship.PARENT_OF]
    first = (
        {"action": "c2pa.opened", "parameters": {"ingredientIds": parents}, "description": note}
        if parents
        else {"action": "c2pa.created", "digitalSourceType": COMPOSITE_SOURCE, "description": note}
    )
    placed = [
        {"action": "c2pa.placed", "parameters": {"ingredientIds": [label]}, "description": note}
        for label in labels
        if relationships[label] == Relationship.COMPONENT_OF
    ]
    return [first, *placed]


def _check_single_parent(originals: Sequence[MatchedOriginal]) -> None:
    parents = [original.path for original in originals if original.relationship == Relationship.PARENT_OF]
    if len(parents) > 1:
        raise ValueError(f"at most one original can be parentOf the query, not {len(parents)}")


def _match_entry(original: MatchedOriginal, query_credentials: ContentCredentials | None) -> dict:
    return {
        "path": original.path,
        "sha256": original.sha256,
        "format": original.mime_type,
        "role": original.role,
        "relationship": original.relationship,
        "score": original.score,
        "regions": list(original.regions),
        "credentials": original.credentials.summary() if original.credentials else None,
        "agreement": compare_credentials(query_credentials, original.credentials).to_json(),
    }
