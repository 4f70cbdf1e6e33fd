"""The object stage inside `imgprov search`: a composite's host and donors from an index with objects.

After the global and local stages (`imgprov.search.pipeline.find_candidates`), the verified region
covering most of the query picks its host; the regions the host does not explain (Eq. 9) and the
whole query are the query's objects, embedded like the collection's (Eq. 4) and searched in the
index's object vectors (Eq. 7). Every image a stage found becomes one `Evidence` for the fusion
model (`imgprov.search.fusion.FusionScoring`), which the ranker then scores; each match carries
the query regions it explains: its verified regions, or the object pair that found it (Eq. 8),
whose query box is where the donor's content was pasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from imgprov.errors import ImgprovError
from imgprov.extract.objects.stage import HostAlignment, pick_host
from imgprov.images import load_image
from imgprov.results import RegionSource
from imgprov.search.candidates import Candidate
from imgprov.search.fusion import Evidence, ExplainedRegion, FusionScoring, search_objects
from imgprov.storage import Store
from imgprov.verify import VerifiedRegion


def object_evidence(
    collection: Store,
    pixels: np.ndarray,
    candidates: Sequence[Candidate],
    embedding: np.ndarray | None,
) -> tuple[list[Evidence], FusionScoring]:
    """What every stage, the object stage included, found about each image for a query ((H, W, 3)
    uint8 RGB) in an index with objects, and the fusion model that scores it.

    candidates: what the global and local stages found; embedding: the query's global descriptor
    (cosines of images only the object stage finds), None without one.
    """
    stage = collection.object_stage()
    index = collection.object_index()
    if stage is None or index is None:
        raise ValueError("object_evidence needs an index with objects")
    conf = stage.conf.retrieval
    height, width = pixels.shape[:2]
    verified = [(c.image_id, region) for c in candidates for region in c.regions]
    host = pick_host(verified, (width, height), conf.host_min_coverage)
    query_objects = stage.query_objects(pixels, _alignment(collection, host))
    hits = search_objects(index, collection.searchable(query_objects.vectors), conf.neighbours)
    evidence = {c.image_id: _stage_evidence(c) for c in candidates}
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
            RegionSource.OBJECTS,
        )
        current = evidence.get(hit.image_id) or Evidence(hit.image_id, cosine=cosines.get(hit.image_id))
        evidence[hit.image_id] = replace(current, objects=hit, object_region=region)
    return list(evidence.values()), FusionScoring(conf)


def _stage_evidence(candidate: Candidate) -> Evidence:
    """What the global and local stages found about one image, as the fusion model reads it."""
    return Evidence(
        image_id=candidate.image_id,
        cosine=candidate.cosine,
        os2os=candidate.os2os,
        inliers=candidate.inliers,
        support=candidate.support,
        regions=tuple(
            ExplainedRegion(_box(r.query_box), _box(r.match_box), RegionSource.LOCAL, r.inliers)
            for r in candidate.regions
        ),
        transform=candidate.regions[0].transform if candidate.regions else None,
    )


def _alignment(collection: Store, host: tuple[int, VerifiedRegion] | None) -> HostAlignment | None:
    """The host's pixels and where the query lies in it; None without a host or when its file
    cannot be read any more (the query's objects are then its proposals)."""
    if host is None:
        return None
    image_id, region = host
    record = collection.images([image_id]).get(image_id)
    if record is None:
        return None
    try:
        pixels = load_image(record.path).pixels
    except (ImgprovError, OSError):
        return None
    return HostAlignment(pixels, np.asarray(region.transform, np.float64))


def _box(box) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)
