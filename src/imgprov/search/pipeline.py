"""Search stage: find the originals a query is made of.

The steps, in order: the query's global embedding and its nearest neighbours; by default, the
cascade's first look (`imgprov.search.cascade`), which ends the search when one verified match
settles the query; then, for each view
of the query in turn (the query itself, its mirror image, its photometric restoration) until
verified regions cover enough of it, RootSIFT features, k-NN of every descriptor over the whole
collection and OS2OS voting to shortlist images and find the objects they share with the query,
then MAGSAC verification of the best candidates; in an index with objects, the object stage
(`imgprov.search.objects`); last, the match decision (`imgprov.search.ranking`). A candidate
without a verified region is not a match unless its global descriptor makes it one; a query
without any match gets an empty result (no original in the collection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from imgprov.errors import IndexStoreError, PresetError
from imgprov.extract.models import sscd_extractor
from imgprov.extract.restore import restore_photometry
from imgprov.extract.rootsift import descriptors_as_float, extract_rootsift
from imgprov.extract.sscd import SSCDExtractor
from imgprov.geometry import apply_matrix, flip_matrix, query_coverage
from imgprov.presets import LocalFeatureConf, SearchConf
from imgprov.provenance import ContentCredentials, compare_credentials
from imgprov.results import Match, SearchPath, SearchResult, SearchStage, VotePoint
from imgprov.search.calibration import match_model
from imgprov.search.candidates import Candidate, Candidates, QueryView, verify_candidate
from imgprov.search.cascade import first_look
from imgprov.search.objects import object_evidence
from imgprov.search.os2os import CandidateVotes, os2os_candidates
from imgprov.search.ranking import CalibratedScoring, ranked_matches
from imgprov.storage import Store
from imgprov.storage.ids import split_ids

STAGES = tuple(SearchStage)
ViewMaker = Callable[[np.ndarray, Store], QueryView | None]
Shortlist = list[tuple[QueryView, CandidateVotes]]


def find_candidates(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    *,
    stage: str = SearchStage.CASCADE,
    embedder: SSCDExtractor | None = None,
) -> Candidates:
    """Run the stages of `search` and return what they found about each candidate."""
    plan = _plan(collection, conf, stage)
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    candidates: dict[int, Candidate] = {}
    steps: list[str] = []
    with clock("extract"):
        embedding, first_view = _first_extraction(collection, pixels, conf, plan, embedder)
    if embedding is not None:
        steps.append("global")
        with clock("search"):
            for image_id, cosine in _global_shortlist(collection, embedding, conf).items():
                candidates.setdefault(image_id, Candidate(image_id)).cosine = cosine
    if first_view is not None and conf.cascade is not None:
        steps.append("first-look")
        with clock("verify"):
            model = match_model(SearchStage.BOTH)
            mirror = functools.partial(mirrored, pixels, conf.cascade.first_features)
            if first_look(collection, first_view, mirror, candidates, conf.cascade, conf.verify, model):
                return _found(candidates, plan, (), timings, embedding, SearchPath.EARLY_EXIT, steps)
    shortlist = _local_stage(collection, pixels, conf, candidates, clock, steps) if plan.local else []
    if embedding is not None:
        _set_cosines(collection, embedding, candidates)
    kept = [item for item in shortlist if _is_kept(item, candidates)]
    return _found(candidates, plan, kept, timings, embedding, plan.path, steps)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a search runs: the local stage, the global stage, the cascade's first look; and the
    model that scores it and the path it takes when it runs in full."""

    local: bool
    global_: bool
    first_look: bool
    model_stage: SearchStage
    path: SearchPath


def _plan(collection: Store, conf: SearchConf, stage: str) -> _Plan:
    if stage not in STAGES:
        raise PresetError(f"unknown search stage {stage!r}; valid: {', '.join(STAGES)}")
    if stage == SearchStage.GLOBAL and collection.global_set is None:
        raise IndexStoreError(f"{collection.root}: this index has no global descriptors (--global none)")
    if stage == SearchStage.LOCAL and collection.local_index() is None:
        raise IndexStoreError(f"{collection.root}: this index has no local vector index (--vectors none)")
    local = stage != SearchStage.GLOBAL
    global_ = stage != SearchStage.LOCAL and collection.global_set is not None
    looks_first = stage == SearchStage.CASCADE and global_ and conf.cascade is not None
    if local and global_:
        model_stage = SearchStage.BOTH
    else:
        model_stage = SearchStage.LOCAL if local else SearchStage.GLOBAL
    path = SearchPath.ESCALATED if looks_first else SearchPath(model_stage.value)
    return _Plan(local, global_, looks_first, model_stage, path)


def _first_extraction(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    plan: _Plan,
    embedder: SSCDExtractor | None,
) -> tuple[np.ndarray | None, QueryView | None]:
    """The query's global embedding and, for the cascade's first look, its light local features,
    extracted on two threads at once (ONNX Runtime and OpenCV release the GIL)."""
    if not plan.first_look or conf.cascade is None:
        return (_embed(collection, pixels, embedder) if plan.global_ else None), None
    features = _background().submit(extract_rootsift, pixels, conf.cascade.first_features)
    embedding = _embed(collection, pixels, embedder)
    return embedding, QueryView(features.result(), np.eye(3))


@functools.cache
def _background() -> ThreadPoolExecutor:
    """One thread per process for the extraction that runs beside the global embedding."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgprov-extract")


def _local_stage(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    candidates: dict[int, Candidate],
    clock: _Clock,
    steps: list[str],
) -> Shortlist:
    """Each view of the query in turn, OS2OS voting and verification, until verified regions cover
    `conf.mirror_below_coverage` of the query; returns every view's OS2OS shortlist."""
    height, width = pixels.shape[:2]
    shortlist: Shortlist = []
    for step, make_view in view_makers(conf):
        with clock("extract"):
            view = make_view(pixels, collection)
        if view is None:
            continue
        steps.append(step)
        with clock("search"):
            shortlist += _os2os_shortlist(collection, view, conf)
        _verify_view(collection, view, shortlist, candidates, conf, clock)
        if _best_coverage(candidates, width, height) >= conf.mirror_below_coverage:
            break
    return shortlist


def _found(
    candidates: dict[int, Candidate],
    plan: _Plan,
    kept: Shortlist,
    timings: dict[str, float],
    embedding: np.ndarray | None,
    path: SearchPath,
    steps: list[str],
) -> Candidates:
    return Candidates(
        items=list(candidates.values()),
        model_stage=plan.model_stage,
        votes=tuple(_vote_points(kept)),
        timings=timings,
        embedding=embedding,
        path=path,
        steps=tuple(steps),
    )


def view_makers(conf: SearchConf) -> list[tuple[str, ViewMaker]]:
    """The views of the query, named, in the order they are searched: the query itself ("os2os");
    its mirror image, which finds a flipped copy (`conf.query_flips`); its photometric restoration,
    which finds a copy degraded by impulse noise or low contrast (`conf.restore_degraded`). A view
    is searched only while no candidate's verified regions cover `conf.mirror_below_coverage` of
    the query."""
    return [
        ("os2os", direct_view),
        *([("mirror", mirror_view)] if conf.query_flips else []),
        *([("restored", restored_view)] if conf.restore_degraded else []),
    ]


def _verify_view(
    collection: Store,
    view: QueryView,
    shortlist: Shortlist,
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
            verify_candidate(collection, candidates[image_id], view, own.get(image_id), conf.verify)


def _best_coverage(candidates: dict[int, Candidate], width: int, height: int) -> float:
    """The largest fraction of the query that one candidate's verified regions cover."""
    return max(
        (
            query_coverage([r.query_box for r in c.regions], (width, height), keypoint_boxes=True)
            for c in candidates.values()
            if c.regions
        ),
        default=0.0,
    )


def _is_kept(item: tuple[QueryView, CandidateVotes], candidates: dict[int, Candidate]) -> bool:
    """Whether this view's votes are the ones its candidate kept (for the vote map)."""
    candidate = candidates.get(item[1].image_id)
    return candidate is not None and candidate.votes is item[1]


def search(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    *,
    stage: str = SearchStage.CASCADE,
    top_k: int = 10,
    query_name: str = "",
    embedder: SSCDExtractor | None = None,
    query_credentials: ContentCredentials | None = None,
    unconfirmed: bool = False,
) -> SearchResult:
    """Find the originals of `pixels` ((H, W, 3) uint8 RGB) in the collection.

    stage "cascade" (the default): the global shortlist, then a first look that verifies its most
    similar images with light local features; a certain match that explains the whole query ends
    the search there (`imgprov.search.cascade`), anything else goes on to every stage of "both".
    stage "local": OS2OS over all local descriptors, then MAGSAC verification of the best candidates.
    stage "global": the global embedding's nearest neighbours (compressed index), scored by cosine.
    stage "both": the global shortlist and the OS2OS candidates together, verified and scored by one
    calibrated model; in an index with objects, the query's objects are searched too (OE-SIR Eq. 7)
    and every candidate is scored by the fusion model (`imgprov.search.objects`), each match
    carrying the query regions it explains.
    `embedder` is reused across queries when given (loading it takes a while).
    A candidate is a match when its probability reaches the model's threshold; with `unconfirmed`,
    the candidates ranked next fill the result's `unconfirmed` up to top_k places.
    Matches carry their originals' stored C2PA credentials, compared with `query_credentials`: the
    search itself is by content only, since credentials can be stripped or forged.
    """
    found = find_candidates(collection, pixels, conf, stage=stage, embedder=embedder)
    height, width = pixels.shape[:2]
    steps = found.steps
    if (
        collection.object_set is not None
        and found.model_stage == SearchStage.BOTH
        and (found.path != SearchPath.EARLY_EXIT)
    ):
        steps += ("objects",)
        with _Clock(found.timings)("objects"):
            candidates, scoring = object_evidence(collection, pixels, found.items, found.embedding)
    else:
        candidates, scoring = found.items, CalibratedScoring(match_model(found.model_stage))
    matches, below = ranked_matches(
        candidates, scoring, (width, height), _paths(collection), top_k=top_k, unconfirmed=unconfirmed
    )
    return SearchResult(
        query=query_name,
        width=width,
        height=height,
        matches=tuple(_with_provenance(collection, matches, query_credentials)),
        unconfirmed=tuple(_with_provenance(collection, below, query_credentials)),
        timings=found.timings,
        votes=found.votes,
        credentials=query_credentials.summary() if query_credentials is not None else None,
        path=found.path,
        steps=steps,
    )


def _paths(collection: Store) -> Callable[[list[int]], dict[int, str]]:
    """The file of each image id still in the collection."""
    return lambda image_ids: {
        image_id: record.path for image_id, record in collection.images(image_ids).items()
    }


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


def direct_view(pixels: np.ndarray, collection: Store) -> QueryView:
    """The query's features in its own pixel frame."""
    return QueryView(extract_rootsift(pixels, collection.feature_conf), np.eye(3))


def mirror_view(pixels: np.ndarray, collection: Store) -> QueryView:
    """Features of the query's mirror image, which match a horizontally flipped original."""
    return mirrored(pixels, collection.feature_conf)


def mirrored(pixels: np.ndarray, features: LocalFeatureConf) -> QueryView:
    """The view of the query's mirror image, with `features` of it."""
    flipped = np.ascontiguousarray(pixels[:, ::-1])
    return QueryView(extract_rootsift(flipped, features), flip_matrix(pixels.shape[1]))


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


def _os2os_shortlist(collection: Store, view: QueryView, conf: SearchConf) -> Shortlist:
    """The `conf.shortlist` images with the best OS2OS scores for one view of the query."""
    return [(view, votes) for votes in vote_with_view(collection, view, conf)[: conf.shortlist]]


def _embed(collection: Store, pixels: np.ndarray, embedder: SSCDExtractor | None) -> np.ndarray:
    extractor = embedder if embedder is not None else sscd_extractor(collection.global_conf)
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


def _vote_points(shortlist: Shortlist) -> list[VotePoint]:
    return [
        VotePoint(
            image_id=candidate.image_id,
            score=cluster.score,
            points=apply_matrix(view.to_query, cluster.query_points).astype(np.float32),
            weights=cluster.affinity,
        )
        for view, candidate in shortlist
        for cluster in candidate.clusters
    ]
