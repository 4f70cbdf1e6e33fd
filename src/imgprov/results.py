"""Typed result records shared by the search stage, the CLI and the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

Box = tuple[float, float, float, float]


class Role(StrEnum):
    """What a matched original is to the query: the host it was made from, or a donor of a region."""

    HOST = "host"
    DONOR = "donor"


class RegionSource(StrEnum):
    """What found a region: verified local features, an object pair (OE-SIR Eq. 8), or the global
    descriptor alone (the whole query, for a near-duplicate)."""

    LOCAL = "local"
    OBJECTS = "objects"
    GLOBAL = "global"


class SearchStage(StrEnum):
    """Which stages a search runs, and so which calibrated model scores its candidates.

    cascade: the global stage and a first look with local features, then, unless that settles the
    query, everything "both" runs (`imgprov.search.cascade`); scored by the "both" model.
    """

    CASCADE = "cascade"
    BOTH = "both"
    LOCAL = "local"
    GLOBAL = "global"


STAGE_CHOICES = ", ".join(
    f"{stage} (default)" if stage == SearchStage.CASCADE else stage for stage in SearchStage
)
"""The stages, as a command line's help lists them."""


class SearchPath(StrEnum):
    """Which way one search went: the cascade settled the query at its first look (early-exit) or
    went on to every stage (escalated); or the stage asked for ran in full (both, local, global)."""

    EARLY_EXIT = "early-exit"
    ESCALATED = "escalated"
    BOTH = "both"
    LOCAL = "local"
    GLOBAL = "global"


@dataclass(frozen=True)
class MatchRegion:
    """A region of the query explained by a region of the matched image.

    query_box, match_box: (x0, y0, x1, y1) in query and match original pixels.
    source: what found the region (`RegionSource`).
    """

    query_box: Box
    match_box: Box
    score: float
    inliers: int
    source: RegionSource = RegionSource.LOCAL

    def to_json(self) -> dict:
        return {
            "query_box": [round(v, 1) for v in self.query_box],
            "match_box": [round(v, 1) for v in self.match_box],
            "score": round(self.score, 4),
            "inliers": self.inliers,
            "source": self.source,
        }


@dataclass(frozen=True)
class ObjectPair:
    """The closest pair of objects through which the object stage found an image (OE-SIR Eq. 7, 8).

    query_object, match_object: the pair's indices among the query's and the image's objects;
    query_box, match_box: their (x0, y0, x1, y1) boxes in query and match pixels; distance: the
    pair's squared L2 distance.
    """

    query_object: int
    match_object: int
    query_box: Box
    match_box: Box
    distance: float

    def to_json(self) -> dict:
        return {
            "query_object": self.query_object,
            "match_object": self.match_object,
            "query_box": [round(v, 1) for v in self.query_box],
            "match_box": [round(v, 1) for v in self.match_box],
            "distance": round(self.distance, 4),
        }


@dataclass(frozen=True)
class Match:
    """One original found for a query; `transform` maps query pixels to the original's, (3, 3).

    role: host for the match whose regions cover most of the query, donor for the others, None
    for a candidate below the match threshold (`imgprov.search.ranking.assign_roles`).
    coverage: the fraction of the query's area its regions cover.
    object_pair: the object pair that found the image, when the object stage did.
    """

    image_id: int
    path: str
    rank: int
    score: float
    inliers: int
    os2os: float
    regions: tuple[MatchRegion, ...]
    cosine: float | None = None
    transform: np.ndarray | None = field(default=None, compare=False)
    provenance: dict | None = None
    agreement: dict | None = None
    role: Role | None = None
    coverage: float = 0.0
    object_pair: ObjectPair | None = None

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "id": self.image_id,
            "rank": self.rank,
            "score": round(self.score, 4),
            "role": self.role,
            "coverage": round(self.coverage, 4),
            "inliers": self.inliers,
            "os2os": round(self.os2os, 4),
            "cosine": None if self.cosine is None else round(self.cosine, 4),
            "regions": [region.to_json() for region in self.regions],
            "object_pair": self.object_pair.to_json() if self.object_pair is not None else None,
            "provenance": self.provenance,
            "agreement": self.agreement,
        }


@dataclass(frozen=True)
class VotePoint:
    """Query keypoints that voted for one OS2OS cluster of one candidate.

    points: (M, 2) float32 query pixels; weights: (M,) float32 match affinities.
    """

    image_id: int
    score: float
    points: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class SearchResult:
    """Everything one query produced: matches best first (empty when nothing matched).

    unconfirmed: when asked for, the candidates ranked next, below the match threshold, best first,
    so that matches and unconfirmed together fill the ranking's first top-k places (a small pasted
    patch without local detail often ranks there without reaching the threshold). Their ranks
    continue the matches'; not being matches, they have no role.
    credentials: the summary of the query's own C2PA credentials, when it carries any; each match's
    `provenance` is the stored summary of its original's, and `agreement` relates the two.
    path: which way the search went (`SearchPath`); steps: what ran, in order ("global",
    "first-look", "os2os", "mirror", "restored", "objects").
    """

    query: str
    width: int
    height: int
    matches: tuple[Match, ...]
    timings: dict[str, float]
    votes: tuple[VotePoint, ...] = ()
    credentials: dict | None = None
    unconfirmed: tuple[Match, ...] = ()
    path: SearchPath = SearchPath.BOTH
    steps: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "credentials": self.credentials,
            "matches": [match.to_json() for match in self.matches],
            "unconfirmed": [match.to_json() for match in self.unconfirmed],
            "path": self.path,
            "steps": list(self.steps),
            "timings": {name: round(seconds, 4) for name, seconds in self.timings.items()},
        }
