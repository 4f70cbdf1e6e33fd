"""The object stage inside `imgprov search`: a composite's host and donors from an index with objects.

After the global and local stages (`imgprov.search.pipeline.find_candidates`), the verified region covering
most of the query picks its host; the regions the host does not explain (Eq. 9) and the whole query
are the query's objects, embedded like the collection's (Eq. 4) and searched in the index's object
vectors (Eq. 7). Every image a stage found is then scored by the fusion model (`fuse`), and each
match carries the query regions it explains: its verified regions, or the object pair that found it
(Eq. 8), whose query box is where the donor's content was pasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from imgprov.errors import ImgprovError
from imgprov.images import load_image
from imgprov.objects.retrieve import Evidence, ExplainedRegion, FusedMatch, fuse, search_objects
from imgprov.objects.stage import HostAlignment, VerifiedRegion, pick_host
from imgprov.results import Match, MatchRegion
from imgprov.storage import Store

if TYPE_CHECKING:
    from imgprov.search.pipeline import Candidate


def object_matches(
    collection: Store,
    pixels: np.ndarray,
    candidates: Sequence[Candidate],
    embedding: np.ndarray | None,
    top_k: int,
    *,
    unconfirmed: bool = False,
) -> tuple[list[Match], list[Match]]:
    """The matches of a query ((H, W, 3) uint8 RGB) in an index with objects, host and donors, and
    (when `unconfirmed`) the candidates ranked after them up to top_k places in all.

    candidates: what the global and local stages found; embedding: the query's global descriptor
    (cosines of images only the object stage finds), None without one.
    """
    stage = collection.object_stage()
    index = collection.object_index()
    if stage is None or index is None:
        raise ValueError("object_matches needs an index with objects")
    conf = stage.conf.retrieval
    height, width = pixels.shape[:2]
    size = (width, height)
    verified = [
        VerifiedRegion(c.image_id, r.query_box, r.inliers, r.transform) for c in candidates for r in c.regions
    ]
    query_objects = stage.query_objects(
        pixels, _alignment(collection, pick_host(verified, size, conf.host_min_coverage))
    )
    hits = search_objects(index, collection.searchable(query_objects.vectors), conf.neighbours)
    evidence = {
        c.image_id: Evidence(
            image_id=c.image_id,
            cosine=c.cosine,
            os2os=c.votes.score if c.votes is not None else 0.0,
            inliers=sum(r.inliers for r in c.regions),
            support=max((r.support for r in c.regions), default=0.0),
            regions=tuple(
                ExplainedRegion(_box(r.query_box), _box(r.match_box), "local", r.inliers) for r in c.regions
            ),
        )
        for c in candidates
    }
    stored = collection.objects([hit.image_id for hit in hits])
    missing = [hit.image_id for hit in hits if hit.image_id not in evidence]
    cosines = {}
    if embedding is not None:
        cosines = {i: float(np.dot(v, embedding)) for i, v in collection.embeddings(missing).items()}
    for hit in hits:
        if hit.image_id not in stored:
            continue
        region = ExplainedRegion(
            _box(query_objects.boxes[hit.query_object]),
            _box(stored[hit.image_id].boxes[hit.match_object]),
            "objects",
        )
        current = evidence.get(hit.image_id) or Evidence(hit.image_id, cosine=cosines.get(hit.image_id))
        evidence[hit.image_id] = replace(current, objects=hit, object_region=region)
    fused = fuse(list(evidence.values()), size, conf, top_k=top_k, keep_all=unconfirmed)
    records = collection.images([match.image_id for match in fused])
    transforms = {c.image_id: c.regions[0].transform for c in candidates if c.regions}
    found = [
        (
            match.confirmed,
            _to_match(
                match,
                records[match.image_id].path,
                transforms.get(match.image_id),
                query_objects.boxes,
                stored,
            ),
        )
        for match in fused
        if match.image_id in records
    ]
    return [m for confirmed, m in found if confirmed], [m for confirmed, m in found if not confirmed]


def _alignment(collection: Store, host: VerifiedRegion | None) -> HostAlignment | None:
    """The host's pixels and where the query lies in it; None without a host or when its file
    cannot be read any more (the query's objects are then its proposals)."""
    if host is None:
        return None
    record = collection.images([host.image_id]).get(host.image_id)
    if record is None:
        return None
    try:
        pixels = load_image(record.path).pixels
    except (ImgprovError, OSError):
        return None
    return HostAlignment(pixels, np.asarray(host.query_to_match, np.float64))


def _to_match(
    match: FusedMatch,
    path: str,
    transform: np.ndarray | None,
    query_boxes: np.ndarray,
    stored: dict,
) -> Match:
    pair = None
    if match.object_pair is not None and match.object_distance is not None:
        query_object, match_object = match.object_pair
        pair = {
            "query_object": query_object,
            "match_object": match_object,
            "query_box": [round(float(v), 1) for v in query_boxes[query_object]],
            "match_box": [round(float(v), 1) for v in stored[match.image_id].boxes[match_object]],
            "distance": round(match.object_distance, 4),
        }
    return Match(
        image_id=match.image_id,
        path=path,
        rank=match.rank,
        score=match.score,
        inliers=match.inliers,
        os2os=match.os2os,
        regions=tuple(
            MatchRegion(region.query_box, region.match_box, match.score, region.inliers, region.source)
            for region in match.regions
        ),
        cosine=match.cosine,
        transform=transform,
        role=match.role if match.confirmed else None,
        coverage=match.coverage,
        object_pair=pair,
    )


def _box(box) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)
