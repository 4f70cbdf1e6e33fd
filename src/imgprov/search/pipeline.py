"""Search stage: find the originals a query is made of.

Local search: RootSIFT of the query (and of its mirror image, so flipped copies are found), k-NN of
every descriptor over the whole collection, OS2OS voting to shortlist images and find the objects
they share with the query, then MAGSAC verification of the best candidates. A candidate without a
verified region is not a match; a query without any match gets an empty result (no original in
the collection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from imgprov.errors import IndexStoreError, PresetError
from imgprov.extract.restore import restore_photometry
from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float, extract_rootsift
from imgprov.extract.sscd import SSCDExtractor
from imgprov.presets import SearchConf
from imgprov.provenance import ContentCredentials, compare_credentials
from imgprov.results import Match, MatchRegion, SearchResult, VotePoint
from imgprov.search.calibration import MatchModel, match_model
from imgprov.search.objects import object_matches
from imgprov.search.os2os import CandidateVotes, os2os_candidates
from imgprov.storage import Store
from imgprov.storage.ids import split_ids
from imgprov.verify import VerifiedRegion, verify_pair


@dataclass(frozen=True)
class QueryView:
    """The query, or its mirror image, with features in the view's own pixel frame.

    to_query: (3, 3) float64 mapping view pixels to query pixels.
    """

    features: LocalFeatures
    to_query: np.ndarray

    def region_in_query_frame(self, region: VerifiedRegion) -> VerifiedRegion:
        """Map a region verified in this view's frame to the query's frame."""
        query_points = _apply(self.to_query, region.query_points).astype(np.float32)
        return VerifiedRegion(
            query_box=_bounding_box(query_points),
            match_box=region.match_box,
            inliers=region.inliers,
            support=region.support,
            transform=region.transform @ np.linalg.inv(self.to_query),
            query_points=query_points,
            match_points=region.match_points,
        )


STAGES = ("both", "local", "global")


@dataclass
class Candidate:
    """What the stages found about one collection image: OS2OS votes, cosine, verified regions."""

    image_id: int
    votes: CandidateVotes | None = None
    view: QueryView | None = None
    cosine: float | None = None
    regions: list[VerifiedRegion] = field(default_factory=list)

    def features(self) -> dict[str, float]:
        """The inputs of the calibrated match model (`imgprov.search.calibration.MATCH_FEATURES`)."""
        return {
            "log_inliers": math.log1p(sum(region.inliers for region in self.regions)),
            "support": max((region.support for region in self.regions), default=0.0),
            "cosine": self.cosine if self.cosine is not None else 0.0,
        }


@dataclass(frozen=True)
class Candidates:
    """Every collection image a query's stages found, before the match decision.

    model_stage: which calibrated model scores them ("local", "global" or "both").
    """

    items: list[Candidate]
    model_stage: str
    votes: tuple[VotePoint, ...]
    timings: dict[str, float]
    embedding: np.ndarray | None = None


def find_candidates(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    *,
    stage: str = "both",
    embedder: SSCDExtractor | None = None,
) -> Candidates:
    """Run the stages of `search` and return what they found about each candidate."""
    if stage not in STAGES:
        raise PresetError(f"unknown search stage {stage!r}; valid: {', '.join(STAGES)}")
    if stage == "global" and collection.global_set is None:
        raise IndexStoreError(f"{collection.root}: this index has no global descriptors (--global none)")
    if stage == "local" and collection.local_index() is None:
        raise IndexStoreError(f"{collection.root}: this index has no local vector index (--vectors none)")
    use_local = stage in ("local", "both")
    use_global = stage in ("global", "both") and collection.global_set is not None
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    candidates: dict[int, Candidate] = {}
    with clock("extract"):
        view = direct_view(pixels, collection) if use_local else None
        embedding = _embed(collection, pixels, embedder) if use_global else None
    with clock("search"):
        shortlist = _os2os_shortlist(collection, view, conf) if view is not None else []
        if embedding is not None:
            for image_id, cosine in _global_shortlist(collection, embedding, conf).items():
                candidates.setdefault(image_id, Candidate(image_id)).cosine = cosine
            _set_cosines(collection, embedding, candidates)
    if view is not None:
        _verify_view(collection, view, shortlist, candidates, conf, clock)
        height, width = pixels.shape[:2]
        if conf.query_flips and _best_coverage(candidates, width, height) < conf.mirror_below_coverage:
            with clock("extract"):
                mirror = mirror_view(pixels, collection)
            with clock("search"):
                shortlist += _os2os_shortlist(collection, mirror, conf)
            _verify_view(collection, mirror, shortlist, candidates, conf, clock)
        if conf.restore_degraded and _best_coverage(candidates, width, height) < conf.mirror_below_coverage:
            with clock("extract"):
                restored = restored_view(pixels, collection)
            if restored is not None:
                with clock("search"):
                    shortlist += _os2os_shortlist(collection, restored, conf)
                _verify_view(collection, restored, shortlist, candidates, conf, clock)
    if embedding is not None:
        _set_cosines(collection, embedding, candidates)
    return Candidates(
        items=list(candidates.values()),
        model_stage="both" if use_local and use_global else ("local" if use_local else "global"),
        votes=tuple(_vote_points([item for item in shortlist if _is_kept(item, candidates)])),
        timings=timings,
        embedding=embedding,
    )


def _verify_view(
    collection: Store,
    view: QueryView,
    shortlist: list[tuple[QueryView, CandidateVotes]],
    candidates: dict[int, Candidate],
    conf: SearchConf,
    clock: _Clock,
) -> None:
    """Verify this view's best OS2OS candidates and the global candidates most similar to the query;
    a candidate keeps whichever view gave it more inliers."""
    own = {votes.image_id: votes for shown, votes in shortlist if shown is view}
    best_own = list(own)[: conf.verify_top]
    for image_id in best_own:
        candidates.setdefault(image_id, Candidate(image_id))
    by_similarity = sorted(candidates.values(), key=lambda candidate: -(candidate.cosine or 0.0))
    similar = [c.image_id for c in by_similarity[: conf.global_verify] if c.image_id not in best_own]
    with clock("verify"):
        for image_id in best_own + similar:
            _verify_candidate(collection, candidates[image_id], view, own.get(image_id), conf)


def _verify_candidate(
    collection: Store,
    candidate: Candidate,
    view: QueryView,
    votes: CandidateVotes | None,
    conf: SearchConf,
) -> None:
    """Verify in one view; keep the result if it has more inliers than what the candidate has."""
    features = collection.local_features(candidate.image_id)
    if features is None:
        return
    seeds = (
        np.concatenate([np.column_stack([c.query_index, c.match_index]) for c in votes.clusters])
        if votes is not None
        else np.zeros((0, 2), np.int32)
    )
    verified = verify_pair(view.features, features, seeds, conf.verify)
    regions = [view.region_in_query_frame(region) for region in verified]
    if sum(r.inliers for r in regions) > sum(r.inliers for r in candidate.regions):
        candidate.regions, candidate.view, candidate.votes = regions, view, votes
    elif candidate.votes is None and votes is not None:
        candidate.votes, candidate.view = votes, view


def _best_coverage(candidates: dict[int, Candidate], width: int, height: int) -> float:
    """The largest fraction of the query that one candidate's verified regions cover."""
    verified = [candidate for candidate in candidates.values() if candidate.regions]
    return max((region_coverage(tuple(c.regions), width, height) for c in verified), default=0.0)


def _is_kept(item: tuple[QueryView, CandidateVotes], candidates: dict[int, Candidate]) -> bool:
    """Whether this view's votes are the ones its candidate kept (for the vote map)."""
    candidate = candidates.get(item[1].image_id)
    return candidate is not None and candidate.votes is item[1]


def search(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    *,
    stage: str = "both",
    top_k: int = 10,
    query_name: str = "",
    embedder: SSCDExtractor | None = None,
    query_credentials: ContentCredentials | None = None,
    unconfirmed: bool = False,
) -> SearchResult:
    """Find the originals of `pixels` ((H, W, 3) uint8 RGB) in the collection.

    stage "local": OS2OS over all local descriptors, then MAGSAC verification of the best candidates.
    stage "global": the global embedding's nearest neighbours (compressed index), scored by cosine.
    stage "both": the global shortlist and the OS2OS candidates together, verified and scored by one
    calibrated model; in an index with objects, the query's objects are searched too (OE-SIR Eq. 7)
    and every candidate is scored by the fusion model (`imgprov.search.objects`), each match
    carrying the query regions it explains.
    `embedder` is reused across queries when given (loading it takes ~0.3 s).
    A candidate is a match when its calibrated probability reaches the model's threshold; with
    `unconfirmed`, the candidates ranked next fill the result's `unconfirmed` up to top_k places.
    Matches carry their originals' stored C2PA credentials, compared with `query_credentials`: the
    search itself is by content only, since credentials can be stripped or forged.
    """
    found = find_candidates(collection, pixels, conf, stage=stage, embedder=embedder)
    height, width = pixels.shape[:2]
    if collection.object_set is not None and found.model_stage == "both":
        started = time.perf_counter()
        matches, below = object_matches(
            collection, pixels, found.items, found.embedding, top_k, unconfirmed=unconfirmed
        )
        found.timings["objects"] = time.perf_counter() - started
    else:
        matches, below = _rank(collection, found.items, match_model(found.model_stage), top_k, unconfirmed)
        matches = assign_roles(matches, width, height)
        below = [dataclasses.replace(m, coverage=region_coverage(m.regions, width, height)) for m in below]
    return SearchResult(
        query=query_name,
        width=width,
        height=height,
        matches=tuple(_with_provenance(collection, matches, query_credentials)),
        unconfirmed=tuple(_with_provenance(collection, below, query_credentials)),
        timings=found.timings,
        votes=found.votes,
        credentials=query_credentials.summary() if query_credentials is not None else None,
    )


def assign_roles(matches: list[Match], width: int, height: int) -> list[Match]:
    """Host: the match whose regions cover most of the query; donors: every other match."""
    coverages = [region_coverage(match.regions, width, height) for match in matches]
    host = int(np.argmax(coverages)) if matches else -1
    return [
        dataclasses.replace(match, role="host" if number == host else "donor", coverage=coverage)
        for number, (match, coverage) in enumerate(zip(matches, coverages, strict=True))
    ]


def region_coverage(regions: tuple[MatchRegion | VerifiedRegion, ...], width: int, height: int) -> float:
    """Fraction of a width x height query covered by the union of the regions' query boxes.

    A match found by the global stage alone has no regions and is taken to cover the whole query.
    """
    if not regions:
        return 1.0
    covered = np.zeros((height, width), bool)
    for region in regions:
        x0, y0, x1, y1 = (round(value) for value in region.query_box)
        covered[max(0, y0) : max(0, y1 + 1), max(0, x0) : max(0, x1 + 1)] = True
    return float(covered.mean())


def _with_provenance(
    collection: Store, matches: list[Match], query_credentials: ContentCredentials | None
) -> list[Match]:
    stored = collection.credentials([match.image_id for match in matches])
    return [
        dataclasses.replace(
            match,
            provenance=stored[match.image_id].summary() if match.image_id in stored else None,
            agreement=compare_credentials(query_credentials, stored.get(match.image_id)).to_json(),
        )
        for match in matches
    ]


def search_local(
    collection: Store, pixels: np.ndarray, conf: SearchConf, *, top_k: int = 10, query_name: str = ""
) -> SearchResult:
    """The local stage alone (see `search`)."""
    return search(collection, pixels, conf, stage="local", top_k=top_k, query_name=query_name)


def direct_view(pixels: np.ndarray, collection: Store) -> QueryView:
    """The query's features in its own pixel frame."""
    return QueryView(extract_rootsift(pixels, collection.feature_conf), np.eye(3))


def mirror_view(pixels: np.ndarray, collection: Store) -> QueryView:
    """Features of the query's mirror image, which match a horizontally flipped original."""
    width = pixels.shape[1]
    mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    flipped = np.ascontiguousarray(pixels[:, ::-1])
    return QueryView(extract_rootsift(flipped, collection.feature_conf), mirror)


def restored_view(pixels: np.ndarray, collection: Store) -> QueryView | None:
    """Features of the query after photometric restoration (`imgprov.extract.restore`), or None
    when the query shows no degradation that restoration remedies."""
    restoration = restore_photometry(pixels)
    if restoration is None:
        return None
    return QueryView(extract_rootsift(restoration.pixels, collection.feature_conf), np.eye(3))


def vote_with_view(collection: Store, view: QueryView, conf: SearchConf) -> list[CandidateVotes]:
    """k-NN over the collection's descriptors, then OS2OS voting, for one query view."""
    index = collection.local_index()
    if index is None or len(view.features) == 0 or index.ntotal == 0:
        return []
    k = min(conf.os2os.knn, index.ntotal)
    distances, ids = index.search(descriptors_as_float(view.features.descriptors), k)
    return os2os_candidates(
        view.features,
        distances,
        ids,
        collection.geometry,
        lambda image_ids: {
            image_id: (record.width, record.height)
            for image_id, record in collection.images(image_ids).items()
        },
        conf.os2os,
    )


def _os2os_shortlist(
    collection: Store, view: QueryView, conf: SearchConf
) -> list[tuple[QueryView, CandidateVotes]]:
    """The `conf.shortlist` images with the best OS2OS scores for one view of the query."""
    return [(view, votes) for votes in vote_with_view(collection, view, conf)[: conf.shortlist]]


def _embed(collection: Store, pixels: np.ndarray, embedder: SSCDExtractor | None) -> np.ndarray:
    extractor = embedder if embedder is not None else SSCDExtractor(collection.global_conf)
    return extractor.embed([pixels])[0]


def _global_shortlist(collection: Store, embedding: np.ndarray, conf: SearchConf) -> dict[int, float]:
    """Exact cosine of the `conf.global_shortlist` most similar images, by image id, most similar
    first. A compressed index proposes `conf.global_rerank` neighbours whose stored embeddings
    re-rank them: 128-bit codes alone lose heavily degraded copies among many distractors."""
    index = collection.global_index()
    if index is None or index.ntotal == 0:
        return {}
    proposed = conf.global_shortlist if collection.global_is_exact() else conf.global_rerank
    count = min(max(proposed, conf.global_shortlist), index.ntotal)
    _, ids = index.search(embedding.reshape(1, -1).astype(np.float32), count)
    image_ids, _ = split_ids(ids[0][ids[0] >= 0])
    stored = collection.embeddings([int(image_id) for image_id in image_ids])
    cosines = {image_id: float(np.dot(vector, embedding)) for image_id, vector in stored.items()}
    best = sorted(cosines, key=lambda image_id: (-cosines[image_id], image_id))[: conf.global_shortlist]
    return {image_id: cosines[image_id] for image_id in best}


def _set_cosines(collection: Store, embedding: np.ndarray, candidates: dict[int, Candidate]) -> None:
    """Exact cosine similarity from the stored embeddings (the index's codes are approximate)."""
    missing = [image_id for image_id, candidate in candidates.items() if candidate.cosine is None]
    for image_id, stored in collection.embeddings(missing).items():
        candidates[image_id].cosine = float(np.dot(stored, embedding))


def _rank(
    collection: Store, candidates: list[Candidate], model: MatchModel, top_k: int, unconfirmed: bool
) -> tuple[list[Match], list[Match]]:
    """Candidates whose calibrated match probability reaches the threshold, most probable first;
    and when `unconfirmed`, those ranked after them, up to top_k places in all."""
    scored = [(model.probability(candidate.features()), candidate) for candidate in candidates]
    kept = [(p, c) for p, c in scored if unconfirmed or p >= model.threshold]
    kept.sort(key=lambda item: (-item[0], -sum(r.inliers for r in item[1].regions), item[1].image_id))
    kept = kept[:top_k]
    records = collection.images([candidate.image_id for _, candidate in kept])
    ranked = [
        (
            probability >= model.threshold,
            _to_match(rank, probability, candidate, records[candidate.image_id].path, model),
        )
        for rank, (probability, candidate) in enumerate(kept, start=1)
        if candidate.image_id in records
    ]
    return [m for confirmed, m in ranked if confirmed], [m for confirmed, m in ranked if not confirmed]


def _to_match(rank: int, probability: float, candidate: Candidate, path: str, model: MatchModel) -> Match:
    return Match(
        image_id=candidate.image_id,
        path=path,
        rank=rank,
        score=probability,
        inliers=sum(region.inliers for region in candidate.regions),
        os2os=candidate.votes.score if candidate.votes is not None else 0.0,
        cosine=candidate.cosine,
        regions=tuple(
            MatchRegion(
                query_box=region.query_box,
                match_box=region.match_box,
                score=model.probability(
                    {
                        **candidate.features(),
                        "log_inliers": math.log1p(region.inliers),
                        "support": region.support,
                    }
                ),
                inliers=region.inliers,
            )
            for region in candidate.regions
        ),
        transform=candidate.regions[0].transform if candidate.regions else None,
    )


class _Clock:
    """Adds the seconds spent in each `with clock(name):` block to timings[name]."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def _vote_points(shortlist: list[tuple[QueryView, CandidateVotes]]) -> list[VotePoint]:
    return [
        VotePoint(
            image_id=candidate.image_id,
            score=cluster.score,
            points=_apply(view.to_query, cluster.query_points).astype(np.float32),
            weights=cluster.affinity,
        )
        for view, candidate in shortlist
        for cluster in candidate.clusters
    ]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) affine matrix to (N, 2) points."""
    return points.astype(np.float64) @ matrix[:2, :2].T + matrix[:2, 2]


def _bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
