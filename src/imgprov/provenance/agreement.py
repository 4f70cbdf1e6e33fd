"""Do a query's own credentials agree with the original that content search matched?

The search result stands on content alone: credentials can be stripped or forged. This verdict only
says what a query's credentials, when it has verified ones, claim about the matched original.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imgprov.provenance.credentials import ContentCredentials


class AgreementVerdict(StrEnum):
    """What the query's credentials say about the matched original.

    NO_QUERY_CREDENTIALS: the query carries none (the usual case: stripped when shared).
    QUERY_NOT_VERIFIED: the query's credentials are invalid or unverified; nothing they claim counts.
    SAME_MANIFEST: the query carries the original's own active manifest (a copy of the signed original).
    DERIVED_FROM_ORIGINAL: the original's manifest is in the query's history (it names it as ingredient).
    ORIGINAL_NOT_VERIFIED: the original has no verified credentials to compare with.
    UNRELATED: the query's valid credentials never mention the original: another history, a re-signing,
        or a forgery; content search says the original is in it all the same.
    """

    NO_QUERY_CREDENTIALS = "no-query-credentials"
    QUERY_NOT_VERIFIED = "query-not-verified"
    SAME_MANIFEST = "same-manifest"
    DERIVED_FROM_ORIGINAL = "derived-from-original"
    ORIGINAL_NOT_VERIFIED = "original-not-verified"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Agreement:
    """The verdict for one (query, matched original) pair.

    same_signer: whether both verified manifests were signed by the same subject and issuer; None
        unless both are verified.
    relationship: how the query's active manifest names the original ("parentOf", "componentOf"),
        "ancestor" when only an earlier manifest of its history does; None when it does not.
    """

    verdict: AgreementVerdict
    same_signer: bool | None
    relationship: str | None
    detail: str

    @property
    def agrees(self) -> bool:
        return self.verdict in (AgreementVerdict.SAME_MANIFEST, AgreementVerdict.DERIVED_FROM_ORIGINAL)

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict.value,
            "agrees": self.agrees,
            "same_signer": self.same_signer,
            "relationship": self.relationship,
            "detail": self.detail,
        }


def compare_credentials(query: ContentCredentials | None, original: ContentCredentials | None) -> Agreement:
    """Compare the query's credentials (None: it has none) with a matched original's."""
    if query is None:
        return Agreement(
            AgreementVerdict.NO_QUERY_CREDENTIALS, None, None, "the query carries no content credentials"
        )
    if not query.is_valid:
        return Agreement(
            AgreementVerdict.QUERY_NOT_VERIFIED,
            None,
            None,
            f"the query's credentials are {query.state.value}; what they claim is not evidence",
        )
    if original is None or not original.is_valid or original.active_manifest is None:
        state = "absent" if original is None else original.state.value
        return Agreement(
            AgreementVerdict.ORIGINAL_NOT_VERIFIED,
            None,
            None,
            f"the original's credentials are {state}; nothing to compare the query's with",
        )
    return _compare_verified(query, original)


def _compare_verified(query: ContentCredentials, original: ContentCredentials) -> Agreement:
    same_signer = _same_signer(query, original)
    signer_note = "same signer" if same_signer else "a different signer"
    if query.active_manifest == original.active_manifest:
        return Agreement(
            AgreementVerdict.SAME_MANIFEST, same_signer, None, "the query carries the original's own manifest"
        )
    relationship = _relationship_to(query, original.active_manifest)
    if relationship is not None:
        return Agreement(
            AgreementVerdict.DERIVED_FROM_ORIGINAL,
            same_signer,
            relationship,
            f"the query's manifest names the original's manifest ({relationship}), {signer_note}",
        )
    return Agreement(
        AgreementVerdict.UNRELATED,
        same_signer,
        None,
        f"the query's manifest, by {signer_note}, does not mention the original",
    )


def _relationship_to(query: ContentCredentials, original_label: str) -> str | None:
    for ingredient in query.ingredients:
        if ingredient.active_manifest == original_label:
            return ingredient.relationship or "ingredient"
    return "ancestor" if original_label in query.manifest_labels else None


def _same_signer(query: ContentCredentials, original: ContentCredentials) -> bool | None:
    if query.signer is None or original.signer is None:
        return None
    return query.signer.same_entity(original.signer)
