"""The match decision: scored candidates become ranked `Match` records, and matches get roles.

One ranker serves both match models: the calibrated model of a search stage (`CalibratedScoring`,
over `Candidate`) and, in an index with objects, the fusion model (`imgprov.search.fusion.
FusionScoring`, over `Evidence`). A model scores a candidate, says how sure a match must be, and
describes a match (its regions and the share of the query they cover); the ranker orders,
thresholds and truncates, and the role assigner names the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from imgprov.geometry import query_coverage
from imgprov.results import Match, MatchRegion, Role
from imgprov.search.calibration import MatchModel
from imgprov.search.candidates import Candidate


class Rankable(Protocol):
    """What the ranker reads of any candidate: its image and its verified inliers (ties)."""

    @property
    def image_id(self) -> int: ...

    @property
    def inliers(self) -> int: ...


C = TypeVar("C", bound=Rankable)
C_contra = TypeVar("C_contra", bound=Rankable, contravariant=True)


class Scoring(Protocol[C_contra]):
    """A match model as the ranker uses it.

    threshold: the probability a match reaches; min_host_coverage: the share of the query the
    host's regions must cover (else every match is a donor).
    """

    @property
    def threshold(self) -> float: ...

    @property
    def min_host_coverage(self) -> float: ...

    def probability(self, candidate: C_contra) -> float: ...

    def match(
        self, candidate: C_contra, *, rank: int, score: float, path: str, query_size: tuple[int, int]
    ) -> Match: ...


@dataclass(frozen=True)
class Ranked(Generic[C]):
    """A candidate's place in the ranking (1 = best) and its probability."""

    rank: int
    score: float
    candidate: C


def rank_candidates(
    candidates: Sequence[C], scoring: Scoring[C], *, top_k: int, unconfirmed: bool
) -> list[Ranked[C]]:
    """The candidates reaching the threshold (with `unconfirmed`, all of them), most probable first
    (ties: more inliers, then lower image id), the first top_k."""
    scored = [(scoring.probability(candidate), candidate) for candidate in candidates]
    kept = [(p, c) for p, c in scored if unconfirmed or p >= scoring.threshold]
    kept.sort(key=lambda item: (-item[0], -item[1].inliers, item[1].image_id))
    return [Ranked(rank, p, c) for rank, (p, c) in enumerate(kept[:top_k], start=1)]


def ranked_matches(
    candidates: Sequence[C],
    scoring: Scoring[C],
    query_size: tuple[int, int],
    paths: Callable[[list[int]], Mapping[int, str]],
    *,
    top_k: int,
    unconfirmed: bool,
) -> tuple[list[Match], list[Match]]:
    """The matches, with roles, and (with `unconfirmed`) the candidates ranked after them, up to
    top_k places in all. query_size: (width, height); paths: the file of each image id still in
    the collection (an image removed meanwhile leaves its rank empty)."""
    ranked = rank_candidates(candidates, scoring, top_k=top_k, unconfirmed=unconfirmed)
    found = paths([item.candidate.image_id for item in ranked])
    matches = [
        scoring.match(
            item.candidate,
            rank=item.rank,
            score=item.score,
            path=found[item.candidate.image_id],
            query_size=query_size,
        )
        for item in ranked
        if item.candidate.image_id in found
    ]
    confirmed = [match for match in matches if match.score >= scoring.threshold]
    below = [match for match in matches if match.score < scoring.threshold]
    return assign_roles(confirmed, scoring.min_host_coverage), below


def assign_roles(matches: Sequence[Match], min_host_coverage: float = 0.0) -> list[Match]:
    """Host: the best-ranked match among those whose regions cover most of the query, provided
    they cover at least `min_host_coverage` of it; donors: every other match."""
    host = max(range(len(matches)), key=lambda number: (matches[number].coverage, -number), default=None)
    if host is not None and matches[host].coverage < min_host_coverage:
        host = None
    return [
        replace(match, role=Role.HOST if number == host else Role.DONOR)
        for number, match in enumerate(matches)
    ]


@dataclass(frozen=True)
class CalibratedScoring:
    """A search stage's calibrated model over `Candidate`: a match's regions are its verified
    regions, each scored as if it were the candidate's only one; a match without regions (found
    by its global descriptor alone) is taken to cover the whole query, and any match can be host."""

    model: MatchModel
    min_host_coverage: float = 0.0

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def probability(self, candidate: Candidate) -> float:
        return self.model.probability(candidate.features())

    def match(
        self, candidate: Candidate, *, rank: int, score: float, path: str, query_size: tuple[int, int]
    ) -> Match:
        features = candidate.features()
        regions = tuple(
            MatchRegion(
                query_box=region.query_box,
                match_box=region.match_box,
                score=self.model.probability(
                    {**features, "log_inliers": math.log1p(region.inliers), "support": region.support}
                ),
                inliers=region.inliers,
            )
            for region in candidate.regions
        )
        return Match(
            image_id=candidate.image_id,
            path=path,
            rank=rank,
            score=score,
            inliers=candidate.inliers,
            os2os=candidate.os2os,
            cosine=candidate.cosine,
            regions=regions,
            transform=candidate.regions[0].transform if candidate.regions else None,
            coverage=query_coverage(
                [region.query_box for region in regions], query_size, keypoint_boxes=True, when_empty=1.0
            ),
        )
