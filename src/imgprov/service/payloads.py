"""The JSON bodies of the API, built from search results, comparisons and catalogue records.

Originals are named by their file name, never by their path on the server.
"""

from __future__ import annotations

from pathlib import Path

from imgprov.compare import Comparison
from imgprov.pictures.web import mask_outline
from imgprov.results import Match, SearchResult
from imgprov.service.adapters import Explanation
from imgprov.storage.records import ImageRecord


def image_payload(record: ImageRecord) -> dict:
    """An indexed original's metadata and where its thumbnail is."""
    return {
        "id": record.id,
        "name": Path(record.path).name,
        "sha256": record.sha256,
        "size_bytes": record.size_bytes,
        "width": record.width,
        "height": record.height,
        "format": record.format,
        "mtime": record.mtime,
        "indexed_at": record.indexed_at,
        "thumbnail": f"/v1/images/{record.id}/thumbnail",
    }


def match_payload(match: Match, record: ImageRecord | None) -> dict:
    """A match as the command line's JSON gives it (role, coverage and any `provenance` included),
    named by file name, with the original's metadata."""
    body = {key: value for key, value in match.to_json().items() if key != "path"}
    return {
        "name": Path(match.path).name,
        **body,
        "original": image_payload(record) if record is not None else None,
    }


def comparison_payload(comparison: Comparison) -> dict:
    """A comparison's JSON, the probability of its verdict, and the changed regions' outlines."""
    return {
        **comparison.to_json(),
        "probability": round(comparison.probabilities[comparison.verdict], 4),
        "outline": mask_outline(comparison.mask),
    }


def explanation_payload(explanation: Explanation) -> dict:
    """The top match's comparison, as `search_payload` takes it."""
    return {"id": explanation.record.id, **comparison_payload(explanation.comparison)}


def search_payload(result: SearchResult, records: dict[int, ImageRecord], query_token: str | None) -> dict:
    """The search JSON with each match's role and metadata, the unconfirmed candidates (no role) when
    asked for, and the token `/v1/compare` takes instead of the query file (None when the server
    could not keep it). The top match's comparison, when asked for, is added by the caller."""
    return {
        "query": result.query,
        "width": result.width,
        "height": result.height,
        "credentials": result.credentials,
        "matches": [match_payload(match, records.get(match.image_id)) for match in result.matches],
        "unconfirmed": [match_payload(match, records.get(match.image_id)) for match in result.unconfirmed],
        "timings": {name: round(seconds, 4) for name, seconds in result.timings.items()},
        "query_token": query_token,
    }
