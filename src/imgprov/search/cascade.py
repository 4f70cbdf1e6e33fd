"""The search cascade's first look: settle a plain copy from the global shortlist and a few
verifications, so that only composites, heavy edits and queries without an original pay for the
full search.

Most queries are copies of one original. Their original leads the global shortlist, and verifying
it with a light set of the query's local features (`CascadeConf.first_features`, a fraction of the
cost of the full set) both proves the match and shows what it explains. The query is settled when
one verified candidate is certain (calibrated P(match) >= `certain`, with at least `min_inliers`
inliers) and explains the query: its inliers reach `explained_cells` of the query's textured
cells (`imgprov.geometry.explained_cells`). That second condition is what keeps early stopping
from losing what people share: a collage, a meme's caption or a screenshot's frame, and an object
pasted in from a donor are textured cells without inliers, so such a query goes on to every stage
(OS2OS voting, mirror and restored views, objects) exactly as stage "both" runs them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from imgprov.geometry import explained_cells
from imgprov.presets import CascadeConf, VerifyConf
from imgprov.search.calibration import MatchModel
from imgprov.search.candidates import Candidate, QueryView, verify_candidate
from imgprov.storage import Store


def first_look(
    collection: Store,
    view: QueryView,
    candidates: Mapping[int, Candidate],
    conf: CascadeConf,
    verify: VerifyConf,
    model: MatchModel,
) -> bool:
    """Verify the global shortlist's most similar candidates with `view` (the query's first-look
    features) and say whether one of them settles the query.

    candidates: the global shortlist, each with its cosine; verified ones get their regions.
    Once a candidate settles the query, the rest are verified only while they are at least
    `conf.duplicate_cosine` similar (duplicates of the original in the collection).
    """
    by_similarity = sorted(candidates.values(), key=lambda c: (-(c.cosine or 0.0), c.image_id))
    settled = False
    for candidate in by_similarity[: conf.verify_top]:
        if settled and (candidate.cosine or 0.0) < conf.duplicate_cosine:
            break
        verify_candidate(collection, candidate, view, None, verify)
        settled = settled or settles(candidate, view, conf, model)
    return settled


def settles(candidate: Candidate, view: QueryView, conf: CascadeConf, model: MatchModel) -> bool:
    """Whether this verified candidate is certainly an original and explains the whole query."""
    if candidate.inliers < conf.min_inliers or model.probability(candidate.features()) < conf.certain:
        return False
    inliers = np.concatenate([region.query_points for region in candidate.regions])
    share = explained_cells(
        view.features.keypoints,
        inliers,
        view.features.image_size,
        grid=conf.grid,
        textured=conf.textured_keypoints,
    )
    return share >= conf.explained_cells
