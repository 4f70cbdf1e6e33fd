"""The provenance report of a searched query: matched originals, their roles, regions and credentials."""

from __future__ import annotations

from imgprov.provenance import ContentCredentials, MatchedOriginal, build_report, mime_type_for
from imgprov.results import SearchResult
from imgprov.storage import Store


def provenance_report(
    collection: Store,
    result: SearchResult,
    query_sha256: str,
    query_credentials: ContentCredentials | None,
) -> dict:
    """The report document (`imgprov.provenance.build_report`) for one query's search result.

    The host is the query's parent ("parentOf"); donors are components ("componentOf").
    """
    ids = [match.image_id for match in result.matches]
    records = collection.images(ids)
    stored = collection.credentials(ids)
    originals = [
        MatchedOriginal(
            path=match.path,
            sha256=records[match.image_id].sha256,
            mime_type=mime_type_for(records[match.image_id].format),
            relationship="parentOf" if match.role == "host" else "componentOf",
            credentials=stored.get(match.image_id),
            role=match.role,
            score=match.score,
            regions=tuple(region.to_json() for region in match.regions),
        )
        for match in result.matches
        if match.image_id in records
    ]
    return build_report(result.query, query_sha256, query_credentials, originals)
