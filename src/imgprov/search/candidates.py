"""What the search stages find about a query before the match decision: the views of the query
that were searched, and one record per collection image a stage found.

The pipeline (`imgprov.search.pipeline`) fills these records, the object stage
(`imgprov.search.objects`) and the ranker (`imgprov.search.ranking`) read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from imgprov.extract.rootsift import LocalFeatures
from imgprov.presets import VerifyConf
from imgprov.results import SearchPath, SearchStage, VotePoint
from imgprov.search.os2os import CandidateVotes
from imgprov.storage import Store
from imgprov.verify import VerifiedRegion, verify_pair


@dataclass(frozen=True)
class QueryView:
    """The query, or an image made from it (its mirror, its restoration), with features in the
    view's own pixel frame.

    to_query: (3, 3) float64 mapping view pixels to query pixels.
    """

    features: LocalFeatures
    to_query: np.ndarray


@dataclass
class Candidate:
    """What the stages found about one collection image: OS2OS votes (and the view that cast
    them), cosine, and the verified regions in the query's frame."""

    image_id: int
    votes: CandidateVotes | None = None
    view: QueryView | None = None
    cosine: float | None = None
    regions: list[VerifiedRegion] = field(default_factory=list)

    @property
    def inliers(self) -> int:
        """Verified inliers over all regions."""
        return sum(region.inliers for region in self.regions)

    @property
    def os2os(self) -> float:
        """The OS2OS score, 0 when the image was not shortlisted by voting."""
        return self.votes.score if self.votes is not None else 0.0

    @property
    def support(self) -> float:
        """The best region's inlier fraction, 0 without regions."""
        return max((region.support for region in self.regions), default=0.0)

    def features(self) -> dict[str, float]:
        """The inputs of the calibrated match model (`imgprov.search.calibration.MATCH_FEATURES`)."""
        return {
            "log_inliers": math.log1p(self.inliers),
            "support": self.support,
            "cosine": self.cosine if self.cosine is not None else 0.0,
        }


@dataclass(frozen=True)
class Candidates:
    """Every collection image a query's stages found, before the match decision.

    model_stage: which calibrated model scores them; embedding: the query's global descriptor
    ((D,) float32), None when the global stage did not run; path, steps: which way the search
    went and what ran (`imgprov.results.SearchResult`).
    """

    items: list[Candidate]
    model_stage: SearchStage
    votes: tuple[VotePoint, ...]
    timings: dict[str, float]
    embedding: np.ndarray | None = None
    path: SearchPath = SearchPath.BOTH
    steps: tuple[str, ...] = ()


def verify_candidate(
    collection: Store,
    candidate: Candidate,
    view: QueryView,
    votes: CandidateVotes | None,
    conf: VerifyConf,
) -> None:
    """Verify the candidate in one view of the query, seeded with the view's OS2OS votes for it
    when there are any; keep the result if it has more inliers than what the candidate has."""
    features = collection.local_features(candidate.image_id)
    if features is None:
        return
    seeds = (
        np.concatenate([np.column_stack([c.query_index, c.match_index]) for c in votes.clusters])
        if votes is not None
        else np.zeros((0, 2), np.int32)
    )
    verified = verify_pair(view.features, features, seeds, conf)
    regions = [region.mapped_to(view.to_query) for region in verified]
    if sum(r.inliers for r in regions) > candidate.inliers:
        candidate.regions, candidate.view, candidate.votes = regions, view, votes
    elif candidate.votes is None and votes is not None:
        candidate.votes, candidate.view = votes, view
