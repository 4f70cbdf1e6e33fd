"""The search cascade's first look: settle a plain copy from the global shortlist and a few
verifications, so that only composites, heavy edits and queries without an original pay for the
full search.

Most queries are copies of one original. Their original leads the global shortlist, and verifying
it with a light set of the query's local features (`CascadeConf.first_features`, a fraction of the
cost of the full set) both proves the match and shows what it explains. The query is settled when
one verified candidate is certain (calibrated P(match) >= `certain`, with at least `min_inliers`
inliers; a mirrored copy is verified with the mirror image's features) and explains the query:
no patch of more than `max_gap` of its textured grid cells is without an inlier
(`imgprov.geometry.explained_cells`). That second condition is what keeps early stopping from
losing what people share: a collage, a meme's caption or a screenshot's frame, and an object
pasted in from a donor are patches of textured cells without inliers (a share of explained cells
is not enough: on the training split, objects pasted over 4-8 % of the frame left 86-97 % of the
cells explained), so such a query goes on to every stage
(OS2OS voting, mirror and restored views, objects) exactly as stage "both" runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from imgprov.geometry import CellCoverage, apply_matrix, explained_cells
from imgprov.presets import CascadeConf, VerifyConf
from imgprov.search.calibration import MatchModel
from imgprov.search.candidates import Candidate, QueryView, verify_candidate
from imgprov.storage import Store


def first_look(
    collection: Store,
    view: QueryView,
    mirror: Callable[[], QueryView],
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
    When `view` explains less than half of the query's textured cells but the most similar is at
    least `conf.duplicate_cosine` similar (a mirrored copy looks alike to the global descriptor and
    shares few local features with its original), the same candidates are verified with
    `mirror()`, the first-look features of the query's mirror image.
    """
    by_similarity = sorted(candidates.values(), key=lambda c: (-(c.cosine or 0.0), c.image_id))
    looked_at = by_similarity[: conf.verify_top]
    if _look(collection, view, looked_at, conf, verify, model):
        return True
    if not looked_at or (looked_at[0].cosine or 0.0) < conf.duplicate_cosine:
        return False
    if max(explained(candidate, view, conf).share for candidate in looked_at) >= 0.5:
        return False
    return _look(collection, mirror(), looked_at, conf, verify, model)


def _look(
    collection: Store,
    view: QueryView,
    looked_at: list[Candidate],
    conf: CascadeConf,
    verify: VerifyConf,
    model: MatchModel,
) -> bool:
    settled = False
    for candidate in looked_at:
        if settled and (candidate.cosine or 0.0) < conf.duplicate_cosine:
            break
        verify_candidate(collection, candidate, view, None, verify)
        settled = settled or settles(candidate, view, conf, model)
    return settled


def settles(candidate: Candidate, view: QueryView, conf: CascadeConf, model: MatchModel) -> bool:
    """Whether this verified candidate is certainly an original and explains the whole query."""
    if candidate.inliers < conf.min_inliers or model.probability(candidate.features()) < conf.certain:
        return False
    return explained(candidate, view, conf).largest_gap <= conf.max_gap


def explained(candidate: Candidate, view: QueryView, conf: CascadeConf) -> CellCoverage:
    """How the candidate's inliers cover the query's textured cells (by `view`'s keypoints)."""
    if not candidate.regions:
        return CellCoverage(share=0.0, largest_gap=conf.grid * conf.grid)
    return explained_cells(
        apply_matrix(view.to_query, view.features.keypoints),
        np.concatenate([region.query_points for region in candidate.regions]),
        view.features.image_size,
        grid=conf.grid,
        textured=conf.textured_keypoints,
    )
