"""Composites: object embeddings (OE-SIR) fused with the global and OS2OS stages, on the Composite set.

    python -m benchmarks.bench_objects                 # size small: ~15 min cold on 2 cores
    python -m benchmarks.bench_objects --size medium
    python -m benchmarks.bench_objects --calibrate     # fit the fusion weights on seed 1001 and print them

Every composite query (1-3 donor regions pasted into a host) is answered by:

* global-only: SSCD cosine of the query against every collection image (exact, no threshold);
* OS2OS-only: imgprov's local stage, `search(stage="local")`, the matches it reports;
* objects-only: OE-SIR, Eq. 7 over the query's objects (its whole image and the regions its host
  does not explain, Eq. 9) against every collection object;
* fused: every candidate of the three stages scored by the fusion model (`imgprov.search.fusion`);
* imgprov search end to end: `search(..., unconfirmed=True)` over an index built with the default
  object preset, as `imgprov search --unconfirmed` runs it (its matches, then the candidates below
  the threshold, 10 places in all).

Tables: the configurations side by side (paper Table 3), the number of objects per collection image
(Table 4), the embedding backbone (Table 2: SSCD ResNet50 teacher, its distilled MobileNetV4, one
EfficientNet-Lite0 pass), the proposal method, storage, and donor recall split by how much local
evidence each pasted region carries (`benchmarks.donor_evidence`). Stage outputs and object vectors are
cached under data/bench/<size>-seed<seed>/objects/ and reused while their inputs are unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import faiss
import numpy as np

from benchmarks import corpus as corpus_module
from benchmarks import donor_evidence, metrics
from benchmarks.calibrate_search import fit_logistic
from benchmarks.methods import ImgprovMethod
from benchmarks.queries import ROLE_DONOR, ROLE_HOST, Query
from benchmarks.report import write_section
from benchmarks.run import (
    DATA,
    SIZES,
    git_commit,
    index_method,
    machine_description,
    query_sets,
    split_corpus,
)
from imgprov import presets
from imgprov.errors import ModelMissing
from imgprov.extract.objects.conf import (
    DEFAULT_OBJECTS,
    EFFNET_ROI,
    R50_CROPS,
    FusionWeights,
    ObjectConf,
    WhiteningConf,
    object_preset,
)
from imgprov.extract.objects.detector import Detector
from imgprov.extract.objects.stage import (
    HostAlignment,
    ImageObjects,
    ObjectStage,
    pick_host,
    searchable,
)
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.search.fusion import (
    Evidence,
    ExplainedRegion,
    FusionScoring,
    ObjectHit,
    fusion_features,
    search_objects,
)
from imgprov.search.pipeline import find_candidates, search
from imgprov.search.ranking import rank_candidates
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.ids import vector_ids
from imgprov.storage.records import CollectionPresets
from imgprov.verify import VerifiedRegion

CACHE_VERSION = "objects-bench-1"
ABLATION_KS = (1, 2, 4, 8, 16)
CALIBRATION_SEED = 1001
TIMING_SAMPLE = 20
ENGINE_TOP_K = 10
FEATURE_NAMES = ("local", "support", "cosine", "os2os", "objects")
SEARCH_MODULES = (
    "imgprov.search.pipeline",
    "imgprov.search.os2os",
    "imgprov.verify",
    "imgprov.presets",
    "imgprov.extract.rootsift",
    "imgprov.extract.sscd",
)


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration: the collection ({bench id: path}, in id order), the composite
    queries, and imgprov's index of the collection (global + local stages)."""

    size: str
    seed: int
    folder: Path
    collection: dict[str, Path]
    queries: list[Query]
    method: ImgprovMethod
    index_seconds_per_image: float

    @property
    def ids(self) -> list[str]:
        return list(self.collection)


@dataclass(frozen=True)
class Candidate:
    """What imgprov's stages found about one collection image for one query (bench ids)."""

    image: str
    cosine: float
    os2os: float
    regions: tuple[ExplainedRegion, ...]
    supports: tuple[float, ...]
    transforms: tuple[tuple[tuple[float, ...], ...], ...]


@dataclass(frozen=True)
class StageAnswers:
    """One query's answers from imgprov: OS2OS-only matches, every candidate, all cosines."""

    local_ids: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    cosines: dict[str, float]
    seconds: dict[str, float]


def prepare(size_name: str, seed: int, log: Callable[[str], None]) -> Setup:
    size = SIZES[size_name]
    photos = corpus_module.load_corpus(DATA / "corpus")
    stamps = corpus_module.load_stamps(DATA / "corpus")
    split = split_corpus(photos, size, seed)
    distractors = corpus_module.build_distractors(
        split.distractor_sources, size.distractors, seed, DATA / "corpus" / "distractors"
    )
    collection = dict(sorted((dict(split.originals) | {t.tile_id: t.path for t in distractors}).items()))
    folder = DATA / "bench" / f"{size.name}-seed{seed}"
    composites = query_sets(split, stamps, size, seed, folder)["composite"]
    method = ImgprovMethod(folder / "objects" / "db", stage="both")
    log(f"indexing {len(collection)} images with imgprov (global + local)")
    stats = index_method(method, collection, folder / "objects")
    return Setup(size_name, seed, folder, collection, composites, method, stats.seconds_per_image)


# --- imgprov's stages --------------------------------------------------------------------------------


def stage_answers(setup: Setup, log: Callable[[str], None]) -> dict[str, StageAnswers]:
    """Every query's OS2OS-only matches, candidates and cosines; cached as JSON."""
    record = setup.method.db.with_name(setup.method.db.name + "-build.json")
    key = _fingerprint(CACHE_VERSION, record.read_text(), _search_code(), [q.query_id for q in setup.queries])
    cache = setup.folder / "objects" / "stages.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["key"] == key:
            return {qid: _answers_from_json(item) for qid, item in saved["answers"].items()}
    collection = setup.method.collection()
    embedder = setup.method.embedder()
    every_id = [record.id for record in _all_records(collection)]
    stored = collection.embeddings(every_id)
    bench_id = {record.id: setup.method.id_of(record.path) for record in _all_records(collection)}
    answers = {}
    for number, query in enumerate(setup.queries, start=1):
        log(f"imgprov stages: query {number}/{len(setup.queries)}")
        answers[query.query_id] = _query_stages(setup, query, collection, embedder, stored, bench_id)
    document = {"key": key, "answers": {qid: _answers_to_json(a) for qid, a in answers.items()}}
    cache.write_text(json.dumps(document))
    return answers


def _search_code() -> str:
    """sha256 of the sources and calibration imgprov's stages answer with: answers cached under an
    older version of them are recomputed."""
    digest = hashlib.sha256()
    for module in SEARCH_MODULES:
        digest.update(Path(importlib.import_module(module).__file__).read_bytes())
    digest.update(resources.files("imgprov.search.calibration").joinpath("search.json").read_bytes())
    return digest.hexdigest()


def _all_records(collection: Collection) -> list:
    return collection.catalogue.all_images()


def _query_stages(setup, query, collection, embedder, stored, bench_id) -> StageAnswers:
    pixels = load_image(query.image_path).pixels
    conf = setup.method.conf
    started = time.perf_counter()
    local = search(collection, pixels, conf, stage="local", top_k=100)
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = find_candidates(collection, pixels, conf, stage="both", embedder=embedder)
    both_seconds = time.perf_counter() - started
    embedding = embedder.embed([pixels])[0]
    cosines = {bench_id[i]: float(np.dot(vector, embedding)) for i, vector in stored.items()}
    candidates = tuple(
        Candidate(
            image=bench_id[item.image_id],
            cosine=cosines[bench_id[item.image_id]],
            os2os=item.votes.score if item.votes is not None else 0.0,
            regions=tuple(
                ExplainedRegion(_box(r.query_box), _box(r.match_box), "local", int(r.inliers))
                for r in item.regions
            ),
            supports=tuple(float(r.support) for r in item.regions),
            transforms=tuple(
                tuple(tuple(float(v) for v in row) for row in r.transform) for r in item.regions
            ),
        )
        for item in found.items
    )
    return StageAnswers(
        local_ids=tuple(bench_id[match.image_id] for match in local.matches),
        candidates=candidates,
        cosines=cosines,
        seconds={"local": local_seconds, "both": both_seconds},
    )


def _box(box) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)


def _answers_to_json(answers: StageAnswers) -> dict:
    return {
        "local_ids": list(answers.local_ids),
        "candidates": [asdict(candidate) for candidate in answers.candidates],
        "cosines": answers.cosines,
        "seconds": answers.seconds,
    }


def _answers_from_json(item: dict) -> StageAnswers:
    candidates = tuple(
        Candidate(
            image=c["image"],
            cosine=c["cosine"],
            os2os=c["os2os"],
            regions=tuple(
                ExplainedRegion(tuple(r["query_box"]), tuple(r["match_box"]), r["source"], r["inliers"])
                for r in c["regions"]
            ),
            supports=tuple(c["supports"]),
            transforms=tuple(tuple(tuple(row) for row in t) for t in c["transforms"]),
        )
        for c in item["candidates"]
    )
    return StageAnswers(tuple(item["local_ids"]), candidates, item["cosines"], item["seconds"])


def host_of(
    answers: StageAnswers, query_size: tuple[int, int], min_coverage: float
) -> tuple[int, VerifiedRegion] | None:
    """The verified region that aligns the query with its host (`pick_host`), with the index of the
    host in `answers.candidates` (the cache keeps no inlier points)."""
    empty = np.zeros((0, 2), np.float32)
    regions = [
        (number, VerifiedRegion(r.query_box, r.match_box, r.inliers, support, np.array(t), empty, empty))
        for number, candidate in enumerate(answers.candidates)
        for r, support, t in zip(candidate.regions, candidate.supports, candidate.transforms, strict=True)
    ]
    return pick_host(regions, query_size, min_coverage)


# --- objects -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectTable:
    """The objects of every collection image, in `Setup.ids` order.

    boxes: (N, K, 4) float32; vectors: (N, K, D0) float32 raw; counts: (N,) objects per image
    (an image may have fewer than K proposals); seconds: extraction time per image.
    """

    boxes: np.ndarray
    vectors: np.ndarray
    counts: np.ndarray
    seconds: float


def collection_table(setup: Setup, stage: ObjectStage, log: Callable[[str], None]) -> ObjectTable:
    """Objects of every collection image with `stage` (k = its max_objects); cached as .npz."""
    conf = stage.conf
    key = _fingerprint(CACHE_VERSION, asdict(conf.proposals), asdict(conf.embedding), setup.ids)
    cache = setup.folder / "objects" / f"table-{key[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return ObjectTable(stored["boxes"], stored["vectors"], stored["counts"], float(stored["seconds"]))
    k = conf.proposals.max_objects
    boxes = np.zeros((len(setup.ids), k, 4), np.float32)
    vectors = np.zeros((len(setup.ids), k, stage.embedder.dim), np.float32)
    counts = np.zeros(len(setup.ids), np.int64)
    spent = 0.0
    for number, path in enumerate(setup.collection.values()):
        pixels = load_image(path).pixels
        started = time.perf_counter()
        objects = stage.collection_objects(pixels)
        spent += time.perf_counter() - started
        count = len(objects)
        boxes[number, :count], vectors[number, :count], counts[number] = objects.boxes, objects.vectors, count
        if (number + 1) % 100 == 0:
            log(f"{conf.name}: {number + 1}/{len(setup.ids)} collection images")
    table = ObjectTable(boxes, vectors, counts, spent / len(setup.ids))
    np.savez(cache, boxes=boxes, vectors=vectors, counts=counts, seconds=table.seconds)
    return table


def query_table(
    setup: Setup, stage: ObjectStage, answers: dict[str, StageAnswers]
) -> tuple[dict[str, ImageObjects], float]:
    """Each query's objects (whole image + regions its host does not explain); seconds per query."""
    objects, spent = {}, 0.0
    for query in setup.queries:
        pixels = load_image(query.image_path).pixels
        found = answers[query.query_id]
        host = host_of(found, (pixels.shape[1], pixels.shape[0]), stage.conf.retrieval.host_min_coverage)
        alignment = None
        if host is not None:
            host_path = setup.collection[found.candidates[host[0]].image]
            alignment = HostAlignment(load_image(host_path).pixels, host[1].transform)
        started = time.perf_counter()
        objects[query.query_id] = stage.query_objects(pixels, alignment)
        spent += time.perf_counter() - started
    return objects, spent / len(setup.queries)


@dataclass(frozen=True)
class ObjectRun:
    """Eq. 7 and 8 for every query: its object hits (image numbers = positions in `Setup.ids`)."""

    hits: dict[str, list[ObjectHit]]
    bytes_per_object: int


def run_objects(
    table: ObjectTable,
    queries: dict[str, ImageObjects],
    k: int,
    stage: ObjectStage,
    pq_bytes: int = 0,
) -> ObjectRun:
    """Index the first k objects of every collection image and search every query's objects."""
    counts = np.minimum(table.counts, k)
    raw = np.concatenate([table.vectors[i, :count] for i, count in enumerate(counts)])
    ids = np.concatenate([vector_ids(i, int(count)) for i, count in enumerate(counts)])
    whitening = stage.fit_whitening(raw)
    vectors = searchable(raw, whitening)
    dim = vectors.shape[1]
    if pq_bytes:
        quantizer = faiss.IndexPQ(dim, pq_bytes, 8)
        # A small collection trains its codebooks on what it has (faiss asks for 39 points a centroid).
        quantizer.pq.cp.min_points_per_centroid = 1
        index = faiss.IndexIDMap2(quantizer)
        index.train(vectors)
        bytes_per_object = pq_bytes
    else:
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        bytes_per_object = 4 * dim
    index.add_with_ids(vectors, ids)
    neighbours = stage.conf.retrieval.neighbours
    hits = {
        qid: search_objects(index, searchable(objects.vectors, whitening), neighbours)
        for qid, objects in queries.items()
    }
    return ObjectRun(hits, bytes_per_object)


# --- the engine end to end ------------------------------------------------------------------------------


class ObjectsIndexMethod(ImgprovMethod):
    """imgprov over an index built with the default object preset (`imgprov index --objects`)."""

    collection_presets = CollectionPresets(objects=DEFAULT_OBJECTS)


@dataclass(frozen=True)
class EngineRun:
    """`imgprov search --unconfirmed --top-k 10` of every query (bench ids best first): its matches,
    and its whole list (the matches, then the unconfirmed candidates)."""

    matches: dict[str, list[str]]
    listed: dict[str, list[str]]
    query_seconds: float
    index_seconds_per_image: float


def engine_run(setup: Setup, log: Callable[[str], None]) -> EngineRun:
    """Index the collection with objects and search every query as the command line does."""
    method = ObjectsIndexMethod(setup.folder / "objects" / "db-with-objects", stage="both")
    log(f"indexing {len(setup.collection)} images with imgprov (global + local + objects)")
    stats = index_method(method, setup.collection, setup.folder / "objects")
    collection, embedder = method.collection(), method.embedder()
    matches, listed, spent = {}, {}, 0.0
    for number, query in enumerate(setup.queries, start=1):
        log(f"imgprov search --unconfirmed: query {number}/{len(setup.queries)}")
        pixels = load_image(query.image_path).pixels
        started = time.perf_counter()
        result = search(
            collection, pixels, method.conf, top_k=ENGINE_TOP_K, embedder=embedder, unconfirmed=True
        )
        spent += time.perf_counter() - started
        matches[query.query_id] = [method.id_of(match.path) for match in result.matches]
        unconfirmed = [method.id_of(match.path) for match in result.unconfirmed]
        listed[query.query_id] = matches[query.query_id] + unconfirmed
    return EngineRun(matches, listed, spent / len(setup.queries), stats.seconds / stats.images)


# --- fusion and scoring ----------------------------------------------------------------------------------


def evidence_for(
    setup: Setup,
    answers: StageAnswers,
    hits: list[ObjectHit] | None,
    table: ObjectTable | None,
    query_objects: ImageObjects | None,
) -> list[Evidence]:
    """One `Evidence` per collection image any stage found (image id = position in `Setup.ids`)."""
    number = {image: i for i, image in enumerate(setup.ids)}
    by_image: dict[int, dict] = {}
    for candidate in answers.candidates:
        by_image[number[candidate.image]] = {
            "cosine": candidate.cosine,
            "os2os": candidate.os2os,
            "inliers": sum(region.inliers for region in candidate.regions),
            "support": max(candidate.supports, default=0.0),
            "regions": candidate.regions,
        }
    for hit in hits or []:
        entry = by_image.setdefault(hit.image_id, {"cosine": answers.cosines[setup.ids[hit.image_id]]})
        entry["objects"] = hit
        entry["object_region"] = ExplainedRegion(
            _box(query_objects.boxes[hit.query_object]),
            _box(table.boxes[hit.image_id, hit.match_object]),
            "objects",
        )
    return [Evidence(image_id=image_id, **fields) for image_id, fields in by_image.items()]


def fused_ranking(setup: Setup, evidence: list[Evidence], conf: ObjectConf, reported: bool) -> list[str]:
    """Bench ids best first: every candidate (`reported` False) or only the reported matches."""
    ranked = rank_candidates(
        evidence, FusionScoring(conf.retrieval), top_k=len(evidence), unconfirmed=not reported
    )
    return [setup.ids[item.candidate.image_id] for item in ranked]


def score(setup: Setup, rankings: dict[str, Sequence[str]]) -> dict[str, float]:
    """host R@1, donor R@10 and total R@10 of rankings ({query id: bench ids best first})."""
    cases, hosts = [], []
    for query in setup.queries:
        ranking = list(dict.fromkeys(rankings[query.query_id]))
        related = frozenset(query.related) - query.relevant_ids()
        relevant = query.relevant_ids()
        donors = query.relevant_ids([ROLE_DONOR])
        cases.append(metrics.RetrievalCase(tuple(ranking), None, relevant, donors, related))
        hosts.append(
            metrics.RetrievalCase(tuple(ranking), None, query.relevant_ids([ROLE_HOST]), related=related)
        )
    report = metrics.evaluate_retrieval(cases)
    return {
        "host R@1": metrics.instance_recall_at_k(hosts, (1,))[1],
        "donor R@10": report.donor_recall_at_k[10],
        "total R@10": report.total_recall_at_k[10],
    }


def pasted_evidence(setup: Setup, log: Callable[[str], None]) -> dict[str, dict[str, int]]:
    """{query id: {donor id: oracle inliers of its pasted region}} (`benchmarks.donor_evidence`);
    cached as JSON."""
    local, verify = presets.local_features(), presets.search().verify
    source = Path(donor_evidence.__file__).read_text()
    key = _fingerprint(
        CACHE_VERSION, source, asdict(local), asdict(verify), [q.query_id for q in setup.queries]
    )
    cache = setup.folder / "objects" / "donor-evidence.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["key"] == key:
            return saved["inliers"]
    log("oracle: local evidence of every pasted region")
    inliers = {
        query.query_id: donor_evidence.donor_inliers(query, setup.collection, local, verify)
        for query in setup.queries
    }
    cache.write_text(json.dumps({"key": key, "inliers": inliers}))
    return inliers


def donor_recall_by_evidence(
    setup: Setup, rankings: dict[str, Sequence[str]], inliers: dict[str, dict[str, int]], min_inliers: int
) -> dict[str, dict[str, float]]:
    """Donor R@10 over the donors whose pasted region reaches `min_inliers` oracle inliers, and over
    the others: {"identifiable" | "not identifiable": {"donors": count, "donor R@10": recall}}."""
    groups = {"identifiable": [], "not identifiable": []}
    for query in setup.queries:
        ranking = list(dict.fromkeys(rankings[query.query_id]))
        related = frozenset(query.related) - query.relevant_ids()
        for group in groups:
            donors = frozenset(
                donor
                for donor, count in inliers[query.query_id].items()
                if (count >= min_inliers) == (group == "identifiable")
            )
            if donors:
                groups[group].append(
                    metrics.RetrievalCase(tuple(ranking), None, query.relevant_ids(), donors, related)
                )
    return {
        group: {
            "donors": sum(len(case.donors) for case in cases),
            "donor R@10": metrics.evaluate_retrieval(cases).donor_recall_at_k[10] if cases else math.nan,
        }
        for group, cases in groups.items()
    }


# --- the experiment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """An object configuration measured at some k (objects per collection image) and code size."""

    label: str
    conf: ObjectConf
    k: int
    pq_bytes: int = 0


class Experiment:
    """The composite benchmark at one size and seed; models and tables are built once."""

    def __init__(self, setup: Setup, log: Callable[[str], None]):
        self.setup = setup
        self.log = log
        self.answers = stage_answers(setup, log)
        self._stages: dict[str, ObjectStage] = {}
        self._tables: dict[str, ObjectTable] = {}
        self._queries: dict[str, tuple[dict[str, ImageObjects], float]] = {}
        self._detector: Detector | None = None
        self._evidence: dict[tuple[str, int, int], tuple[dict[str, list[Evidence]], ObjectRun]] = {}
        self._rankings: dict[tuple, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}

    def stage(self, conf: ObjectConf) -> ObjectStage:
        if conf.name not in self._stages:
            if conf.proposals.method == "detector" and self._detector is None:
                self._detector = Detector()
            self._stages[conf.name] = ObjectStage(conf, detector=self._detector)
        return self._stages[conf.name]

    def table(self, conf: ObjectConf) -> ObjectTable:
        if conf.name not in self._tables:
            self._tables[conf.name] = collection_table(self.setup, self.stage(conf), self.log)
        return self._tables[conf.name]

    def query_objects(self, conf: ObjectConf) -> tuple[dict[str, ImageObjects], float]:
        if conf.name not in self._queries:
            self._queries[conf.name] = query_table(self.setup, self.stage(conf), self.answers)
        return self._queries[conf.name]

    def evidence(self, variant: Variant) -> tuple[dict[str, list[Evidence]], ObjectRun]:
        key = (variant.conf.name, variant.k, variant.pq_bytes)
        if key not in self._evidence:
            self._evidence[key] = self._gather_evidence(variant)
        return self._evidence[key]

    def _gather_evidence(self, variant: Variant) -> tuple[dict[str, list[Evidence]], ObjectRun]:
        queries, _ = self.query_objects(variant.conf)
        table = self.table(variant.conf)
        run = run_objects(table, queries, variant.k, self.stage(variant.conf), variant.pq_bytes)
        evidence = {
            query.query_id: evidence_for(
                self.setup,
                self.answers[query.query_id],
                run.hits[query.query_id],
                table,
                queries[query.query_id],
            )
            for query in self.setup.queries
        }
        return evidence, run

    def measure(self, variant: Variant, weights: FusionWeights) -> dict[str, float | dict]:
        """Objects-only and fused scores of a variant, with its costs."""
        run = self.evidence(variant)[1]
        fused, reported = self.rankings(variant, weights)
        objects_only = {qid: [self.setup.ids[hit.image_id] for hit in hits] for qid, hits in run.hits.items()}
        table = self.table(variant.conf)
        _, query_seconds = self.query_objects(variant.conf)
        return {
            "objects": score(self.setup, objects_only),
            "fused": score(self.setup, fused),
            "fused reported": score(self.setup, reported),
            "index bytes per image": float(np.minimum(table.counts, variant.k).mean() * run.bytes_per_object),
            "extract ms per image": 1000 * table.seconds * variant.k / variant.conf.proposals.max_objects,
            "query ms": 1000 * query_seconds,
        }

    def rankings(
        self, variant: Variant, weights: FusionWeights
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """{query id: bench ids best first} of the fused ranking of every candidate, and of the
        reported matches only."""
        key = (variant.conf.name, variant.k, variant.pq_bytes, weights)
        if key not in self._rankings:
            self._rankings[key] = self._fused_rankings(variant, weights)
        return self._rankings[key]

    def _fused_rankings(
        self, variant: Variant, weights: FusionWeights
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        evidence, _ = self.evidence(variant)
        conf = replace(variant.conf, retrieval=replace(variant.conf.retrieval, fusion=weights))
        fused, reported = {}, {}
        for query in self.setup.queries:
            fused[query.query_id] = fused_ranking(self.setup, evidence[query.query_id], conf, False)
            reported[query.query_id] = fused_ranking(self.setup, evidence[query.query_id], conf, True)
        return fused, reported

    def baselines(self) -> dict[str, dict[str, float]]:
        """Global-only and OS2OS-only rankings, and the fusion of those two without objects."""
        global_only, local_only, local_all = {}, {}, {}
        for query in self.setup.queries:
            answers = self.answers[query.query_id]
            global_only[query.query_id] = sorted(answers.cosines, key=lambda image: -answers.cosines[image])
            local_only[query.query_id] = list(answers.local_ids)
            shortlisted = [c for c in answers.candidates if c.os2os > 0]
            local_all[query.query_id] = [c.image for c in sorted(shortlisted, key=lambda c: -c.os2os)]
        return {
            "global-only (SSCD cosine, all images ranked)": score(self.setup, global_only),
            "OS2OS-only (imgprov local stage, reported matches)": score(self.setup, local_only),
            "OS2OS-only (its 20 best-voted images, verified or not)": score(self.setup, local_all),
        }

    def global_and_local_fused(self, weights: FusionWeights) -> dict[str, float]:
        conf = replace(object_preset(), retrieval=replace(object_preset().retrieval, fusion=weights))
        rankings = {}
        for query in self.setup.queries:
            evidence = evidence_for(self.setup, self.answers[query.query_id], None, None, None)
            rankings[query.query_id] = fused_ranking(self.setup, evidence, conf, False)
        return score(self.setup, rankings)

    def training_samples(self, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
        """(M, 5) fusion features of every candidate of every query and (M,) labels (relevant or
        not; images of the same scene that are not the answer are left out)."""
        evidence, _ = self.evidence(variant)
        rows, labels = [], []
        for query in self.setup.queries:
            relevant, related = query.relevant_ids(), set(query.related)
            for item in evidence[query.query_id]:
                image = self.setup.ids[item.image_id]
                if image in related and image not in relevant:
                    continue
                features = fusion_features(item)
                rows.append([features[name] for name in FEATURE_NAMES])
                labels.append(image in relevant)
        return np.array(rows, np.float64), np.array(labels, bool)

    def global_ms_per_image(self) -> float:
        """SSCD global-descriptor extraction (the index's global preset), ms per collection image."""
        embedder = SSCDExtractor(self.setup.method.collection().global_conf)
        sample = [load_image(path).pixels for path in list(self.setup.collection.values())[:TIMING_SAMPLE]]
        started = time.perf_counter()
        for pixels in sample:
            embedder.embed([pixels])
        return 1000 * (time.perf_counter() - started) / len(sample)


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


# --- calibration -------------------------------------------------------------------------------------


def calibrate(size: str, log: Callable[[str], None]) -> FusionWeights:
    """Fit the fusion model on the training split (seed 1001): logistic regression over every
    candidate's features, threshold at the F1-maximizing probability."""
    experiment = Experiment(prepare(size, CALIBRATION_SEED, log), log)
    k = object_preset().proposals.max_objects
    features, labels = experiment.training_samples(Variant("default", _default_k16(), k))
    theta = fit_logistic(features, labels)
    probabilities = 1.0 / (1.0 + np.exp(-(theta[0] + features @ theta[1:])))
    calibration = metrics.calibrate_threshold(labels, probabilities)
    weights = dict(zip(FEATURE_NAMES, (round(float(w), 3) for w in theta[1:]), strict=True))
    return FusionWeights(bias=round(float(theta[0]), 3), threshold=round(calibration.threshold, 3), **weights)


# --- the report ----------------------------------------------------------------------------------------


def _default_k16() -> ObjectConf:
    """The default preset with 16 objects per image: its first k objects are those of the preset
    with k objects (the grid's order is fixed), so one table serves every k."""
    default = object_preset()
    return replace(
        default,
        name=default.name.replace("-k8-", "-k16-"),
        proposals=replace(default.proposals, max_objects=16),
    )


def _variants(with_proposals: bool) -> dict[str, list[Variant]]:
    default = object_preset()
    k = default.proposals.max_objects
    k16 = _default_k16()
    teacher = replace(default, name=default.name.replace("mnv4", "r50"), embedding=R50_CROPS)
    one_pass = replace(
        default,
        name=default.name.replace("mnv4c224-raw", "effnet512-w256"),
        embedding=EFFNET_ROI,
        whitening=WhiteningConf(dim=256),
    )
    variants = {
        "k": [Variant(f"k = {count}", k16, count) for count in ABLATION_KS],
        "backbone": [
            Variant("SSCD ResNet50 on box crops (teacher, k passes)", teacher, k),
            Variant("SSCD MobileNetV4 on box crops (distilled student, k passes)", k16, k),
            Variant("EfficientNet-Lite0 one pass, ROIAlign + GeM, PCA-w 256", one_pass, k),
        ],
        "storage": [
            Variant("exact (512 float32 = 2048 bytes per object)", k16, k),
            Variant("PQ 32 bytes per object (paper: 8 x 32 bytes)", k16, k, pq_bytes=32),
        ],
    }
    if with_proposals:
        others = [
            replace(
                default,
                name=default.name.replace("grid", method),
                proposals=replace(default.proposals, method=method),
            )
            for method in ("selective", "saliency", "detector")
        ]
        variants["proposals"] = [Variant("grid (R-MAC layout)", k16, k)] + [
            Variant(conf.proposals.method, conf, k) for conf in others
        ]
    return variants


def run(size: str, seed: int, with_proposals: bool, log: Callable[[str], None]) -> tuple[dict, dict]:
    started = time.perf_counter()
    setup = prepare(size, seed, log)
    experiment = Experiment(setup, log)
    weights = object_preset().retrieval.fusion
    default = object_preset()
    results: dict = {"baselines": experiment.baselines()}
    results["global + OS2OS fused (no objects)"] = experiment.global_and_local_fused(weights)
    log("objects: default preset")
    default_variant = Variant(default.name, _default_k16(), default.proposals.max_objects)
    results["default"] = experiment.measure(default_variant, weights)
    for table, variants in _variants(with_proposals).items():
        results[table] = {}
        for variant in variants:
            log(f"objects: {table}: {variant.label}")
            results[table][variant.label] = experiment.measure(variant, weights)
    engine = engine_run(setup, log)
    results["engine"] = {
        "matches": score(setup, engine.matches),
        "listed": score(setup, engine.listed),
        "query seconds": engine.query_seconds,
        "index seconds per image": engine.index_seconds_per_image,
    }
    inliers = pasted_evidence(setup, log)
    fused, reported = experiment.rankings(default_variant, weights)
    min_inliers = presets.search().verify.min_inliers
    results["donor evidence"] = {
        "min inliers": min_inliers,
        "fused": donor_recall_by_evidence(setup, fused, inliers, min_inliers),
        "fused reported": donor_recall_by_evidence(setup, reported, inliers, min_inliers),
    }
    results["global ms per image"] = experiment.global_ms_per_image()
    results["imgprov index seconds per image"] = setup.index_seconds_per_image
    results["imgprov query seconds"] = float(
        np.mean([answers.seconds["both"] for answers in experiment.answers.values()])
    )
    donors = sum(len(query.relevant_ids([ROLE_DONOR])) for query in setup.queries)
    context = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_description(),
        "size": size,
        "seed": seed,
        "collection": len(setup.collection),
        "queries": len(setup.queries),
        "donors": donors,
        "preset": default.name,
        "fusion": asdict(weights),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return context, results


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _score_cells(scores: dict[str, float]) -> list[str]:
    return [_percent(scores["host R@1"]), _percent(scores["donor R@10"]), _percent(scores["total R@10"])]


def _done_when(engine: dict) -> list[str]:
    def verdict(scores: dict[str, float]) -> str:
        met = scores["donor R@10"] >= 0.85 and scores["host R@1"] >= 0.95
        return (
            f"{'met' if met else 'not met'} (donor R@10 {_percent(scores['donor R@10'])}, "
            f"host R@1 {_percent(scores['host R@1'])})"
        )

    return [
        "Issue 6 target (donor R@10 >= 85, host R@1 >= 95), measured on what `imgprov search "
        f"--unconfirmed --top-k {ENGINE_TOP_K}` lists over an index built with `--objects`: "
        f"{verdict(engine['listed'])}. Counting only its matches (fused P >= threshold), without "
        f"the unconfirmed candidates ranked after them: {verdict(engine['matches'])}."
    ]


def _evidence_table(evidence: dict) -> list[str]:
    rows = [
        [
            group,
            f"{evidence['fused'][group]['donors']:.0f}",
            _percent(evidence["fused"][group]["donor R@10"]),
            _percent(evidence["fused reported"][group]["donor R@10"]),
        ]
        for group in ("identifiable", "not identifiable")
    ]
    header = ["donors", "count", "fused donor R@10, all candidates", "fused donor R@10, reported"]
    return [
        "",
        "### Donors by the local evidence their pasted region carries (oracle, benchmarks/donor_evidence.py)",
        "",
        "A donor is identifiable when its pasted pixels, cropped with the ground-truth mask and matched",
        f"against the donor photo itself, give at least {evidence['min inliers']} verified inliers (the",
        "verification's own minimum). The others pasted a patch with nothing local features can tell",
        "apart (plain background, sky, a flat surface): only the global and object stages can find them.",
        "",
        *_table(header, rows),
    ]


def markdown(context: dict, results: dict, command: str) -> str:
    default = results["default"]
    lines = [
        "Reproduce with:",
        "",
        "```sh",
        "make corpus   # fetches and verifies the real photos (once)",
        *(
            ["make detector   # converts the CenterNet model of the detector proposals (once)"]
            if "proposals" in results
            else []
        ),
        command,
        "```",
        "",
        f"- date: {context['date']}; commit: `{context['commit']}`",
        f"- machine: {context['machine']}",
        f"- collection: {context['collection']} images (corpus originals + distractor tiles); "
        f"{context['queries']} Composite queries with {context['donors']} donors; seed {context['seed']}",
        f"- object preset `{context['preset']}`; fusion weights {context['fusion']}",
        f"- whole run {context['wall_seconds']} s",
        "",
        "host R@1: fraction of queries whose host is the first answer; donor R@10: fraction of a query's",
        "donors among its first 10 answers, averaged over queries; total R@10: the same for host and",
        "donors together (benchmarks.metrics). Images of the same scene that are not the answer are ignored.",
        "In percent.",
        "",
        *_done_when(results["engine"]),
        "",
        "In the engine: `imgprov index --objects PRESET` (off by default: it adds the object stage's",
        "extraction to every indexed image, see Cost) stores each image's object boxes and vectors;",
        "`imgprov search` of such an index runs this fused ranking and reports as matches the",
        "candidates whose fused probability reaches the threshold, each with the query regions it",
        "explains and the object pair (Eq. 8) that found it; `--unconfirmed` lists the candidates",
        "ranked after them too, up to `--top-k` places in all. The rows 'imgprov search' below are",
        "that command's output; the rows 'fused' recompute the same ranking from the cached stage",
        "answers and object tables, as every ablation does. Other shots of a query's scene count as",
        "neither right nor wrong, but in the command's list they take some of the 10 places, which the",
        "ranking of every candidate does not limit: hence 'all candidates ranked' can be higher.",
        "",
        "### Configurations (paper Table 3)",
        "",
    ]
    rows = [[name, *_score_cells(scores)] for name, scores in results["baselines"].items()]
    rows.append(
        ["global + OS2OS fused (no objects)", *_score_cells(results["global + OS2OS fused (no objects)"])]
    )
    rows.append(["objects-only (OE-SIR, Eq. 7)", *_score_cells(default["objects"])])
    rows.append(["fused: global + OS2OS + objects, all candidates ranked", *_score_cells(default["fused"])])
    rows.append(["fused: reported matches only (P >= threshold)", *_score_cells(default["fused reported"])])
    engine = results["engine"]
    rows.append(["imgprov search, matches only (P >= threshold)", *_score_cells(engine["matches"])])
    rows.append(
        [
            f"imgprov search --unconfirmed --top-k {ENGINE_TOP_K}: matches, then unconfirmed",
            *_score_cells(engine["listed"]),
        ]
    )
    lines += _table(["configuration", "host R@1", "donor R@10", "total R@10"], rows)
    titles = {
        "k": "Objects per collection image (paper Table 4)",
        "backbone": "Object embedding backbone (paper Table 2: teacher, student, one pass)",
        "proposals": "Object proposals of collection images (k = 8)",
        "storage": "Storage of the object vectors (k = 8)",
    }
    for table, title in titles.items():
        if table not in results:
            continue
        lines += ["", f"### {title}", ""]
        rows = [
            [
                label,
                *_score_cells(entry["objects"])[:2],
                *_score_cells(entry["fused"])[:2],
                f"{entry['index bytes per image']:.0f}",
                f"{entry['extract ms per image']:.0f}",
            ]
            for label, entry in results[table].items()
        ]
        header = [
            "variant",
            "objects host R@1",
            "objects donor R@10",
            "fused host R@1",
            "fused donor R@10",
            "index bytes / image",
            "extract ms / image",
        ]
        lines += _table(header, rows)
        if table == "k":
            lines += [
                "",
                "Extraction time of k objects: k / 16 of the 16-object extraction (one crop per object).",
            ]
    lines += _evidence_table(results["donor evidence"])
    global_ms = results["global ms per image"]
    pq_bytes = list(results["storage"].values())[-1]["index bytes per image"]
    lines += [
        "",
        "### Cost",
        "",
        f"- global stage (SSCD ResNet50, 320 px): {global_ms:.0f} ms per image; imgprov's whole indexing "
        f"(RootSIFT + SSCD + writes): {1000 * results['imgprov index seconds per image']:.0f} ms per image",
        f"- object stage, default preset: {default['extract ms per image']:.0f} ms per collection image "
        f"({default['extract ms per image'] / global_ms:.2f} x the global stage), "
        f"{default['query ms']:.0f} ms per query (host warp, Eq. 9, crops)",
        f"- imgprov search (global + local), per query: {1000 * results['imgprov query seconds']:.0f} ms; "
        f"with objects and --unconfirmed: {1000 * results['engine']['query seconds']:.0f} ms",
        f"- imgprov index with `--objects` (RootSIFT + SSCD + objects + writes): "
        f"{1000 * results['engine']['index seconds per image']:.0f} ms per image",
        f"- index storage per image: {default['index bytes per image']:.0f} bytes exact, "
        f"{pq_bytes:.0f} bytes with PQ; a collection also keeps each object's box and raw vector",
        "",
        "Timings are CPU wall times on the machine above, shared with other jobs: compare within the run.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_objects", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--calibrate", action="store_true", help="fit the fusion weights on seed 1001 and print them"
    )
    parser.add_argument(
        "--proposals", action="store_true", help="also compare proposal methods (~7 min more)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    try:
        if args.calibrate:
            print(calibrate(args.size, log))
            return 0
        context, results = run(args.size, args.seed, args.proposals, log)
    except (corpus_module.CorpusError, ModelMissing) as exc:
        print(f"bench_objects: error: {exc}", file=sys.stderr)
        return 1
    command = "python -m benchmarks.bench_objects " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = markdown(context, results, command.strip())
    print(text)
    print(f"wrote {write_section('objects', text, {'context': context, 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
