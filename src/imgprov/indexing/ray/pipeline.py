"""Distributed indexing: a Ray Data pipeline extracts on workers, the driver writes in batches.

    sources (driver) -> from_items -> map_batches(BatchExtractor, actor pool of N workers)
                     -> iter_batches (driver) -> WritableStore.apply, one transaction per batch

The driver is the only writer: it holds the index's writer lock and writes through the same
transactional `WritableStore.apply` as `index_paths`, so a batch is in the collection entirely or not
at all. Resume and no duplicates come from three facts: (1) each source carries the sha256 the
collection holds for its path, and a worker that hashes the same bytes returns "unchanged" without
extracting, so a re-run after a killed driver only extracts what was not committed; (2) Ray restarts
a killed worker process and retries its batch (`max_restarts`, `max_task_retries`: Ray Data's
defaults for actor pools, -1), so a worker failure costs that batch's time, not the run; (3) the
driver checks each row against the catalogue before adding it (a path is UNIQUE there), so a row
delivered twice, or a file indexed meanwhile, is never added twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from imgprov.errors import ImgprovError
from imgprov.indexing.pipeline import IndexReport, Progress
from imgprov.indexing.ray.worker import (
    ADDED,
    FAILED,
    UNCHANGED,
    BatchExtractor,
    ExtractionSpec,
    new_image,
    unpack_rows,
)
from imgprov.provenance import TrustAnchors
from imgprov.storage import WritableStore

LOCAL_CLUSTER = "local"
"""The `--ray` address that starts a cluster on this machine for one command."""
CONNECT_SECONDS = 10.0
"""How long a HOST:PORT cluster address may take to accept a connection."""
OBJECT_STORE_BYTES = 512 << 20
"""Object store of a `--ray local` cluster: rows of a few batches in flight, not a whole collection."""


class RayUnavailable(ImgprovError):
    """Ray is not installed, or its cluster cannot be reached."""


@dataclass
class ClusterReport(IndexReport):
    """An `IndexReport` and how many sources the workers of each Ray node (by node id) handled."""

    nodes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class RayConf:
    """Where to run: `address` "local" starts a cluster of `workers` processes on this machine;
    anything else ("auto", "HOST:PORT", "ray://HOST:PORT") joins a running cluster, where `workers`
    extraction processes are started. `threads` is each worker's CPU threads."""

    address: str = LOCAL_CLUSTER
    workers: int = 2
    threads: int = 1


@contextlib.contextmanager
def ray_cluster(conf: RayConf) -> Iterator[None]:
    """Connect to (or start) the Ray cluster for the duration of the block; quiet progress bars."""
    # Ray's own messages go to its session logs (/tmp/ray/session_latest/logs), not to the terminal;
    # set RAY_BACKEND_LOG_LEVEL to see the core's on stderr.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install 'imgprov[scale]' (ray[data])") from None
    logging.getLogger("ray").setLevel(logging.ERROR)
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)
    options = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
    if conf.address != LOCAL_CLUSTER:
        _check_reachable(conf.address)
    try:
        if conf.address == LOCAL_CLUSTER:
            # address="local": a new cluster even when RAY_ADDRESS or a `ray start` names another.
            ray.init(
                address=LOCAL_CLUSTER,
                num_cpus=conf.workers,
                object_store_memory=OBJECT_STORE_BYTES,
                **options,
            )
        else:
            ray.init(address=conf.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {conf.address}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


def index_sources(
    collection: WritableStore,
    sources: list[str],
    conf: RayConf,
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
    trust: TrustAnchors | None = None,
) -> ClusterReport:
    """Index sources (local paths or URLs, see `imgprov.indexing.ray.sources`) into an open writable
    collection with Ray workers; call inside `ray_cluster`. The report of `index_paths`, and the Ray
    nodes the sources were handled on."""
    import ray.data

    report = ClusterReport()
    if not sources:
        return report
    spec = ExtractionSpec(
        features=collection.feature_conf,
        global_conf=collection.global_conf,
        object_conf=collection.object_conf,
        trust=trust,
        threads=conf.threads,
    )
    items = [{"source": source, "known": _known_sha256(collection, source)} for source in sources]
    # Blocks of at most one batch, and at least one per worker when there are enough sources.
    block = max(1, min(batch_size, math.ceil(len(items) / conf.workers)))
    blocks = math.ceil(len(items) / block)
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    extracted = dataset.map_batches(
        BatchExtractor,
        fn_constructor_args=(spec,),
        batch_size=block,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(conf.workers, blocks)),
        num_cpus=conf.threads,
    )
    written: set[str] = set()
    for batch in extracted.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=1):
        rows = unpack_rows(batch)
        report.nodes.update(row["node"] for row in rows)
        _write(collection, rows, report, written)
        if progress:
            progress(len(rows))
    return report


def _check_reachable(address: str) -> None:
    """Fail at once with one line when a HOST:PORT address does not accept connections (Ray itself
    retries for minutes); "auto" and ray:// addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {reason}") from None


def _known_sha256(collection: WritableStore, source: str) -> str:
    record = collection.catalogue.image_by_path(source)
    return record.sha256 if record is not None else ""


def _write(collection: WritableStore, rows: list[dict], report: IndexReport, written: set[str]) -> None:
    """Add one batch of worker rows in one transaction; a path already holding the same bytes is
    unchanged, one holding other bytes is replaced."""
    add, remove, replaced = [], [], []
    for row in rows:
        source = row["source"]
        if row["status"] == FAILED:
            report.failed.append((source, row["message"]))
            continue
        if source in written:
            continue
        written.add(source)
        previous = collection.catalogue.image_by_path(source)
        if row["status"] == UNCHANGED or (previous is not None and previous.sha256 == row["sha256"]):
            report.unchanged.append(source)
            continue
        assert row["status"] == ADDED
        add.append(new_image(row, source, collection.object_set is not None))
        if previous is not None:
            remove.append(previous.id)
            replaced.append(source)
    collection.apply(add=add, remove=remove)
    for image in add:
        (report.replaced if image.path in replaced else report.added).append(image.path)
