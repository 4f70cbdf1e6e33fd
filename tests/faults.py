"""Fault injection: run `imgprov index` and `imgprov remove` in a child process, SIGKILL it at seeded
random moments or at named points of a write, and check what survives.

The child is the real command line (`imgprov.cli.app.main`) with three test-only additions installed
before it starts, by `python -m tests.faults child ...` (never by imgprov itself):
- a journal: before each `apply` of either store the paths it adds and removes, after it "commit";
- the kill: at the n-th time the child reaches one of `KILL_POINTS` it SIGKILLs itself (a kill
  at a seeded random time comes from the harness instead);
- `RETRAIN_PRESET`, a local vector-index preset with a small exact-search threshold, so that the
  switch to IVF-PQ, its retraining as the set grows and the switch back happen on a few images.

After every run, killed or not, `verify` checks that the index opens, that `Collection.check`
finds no damage and no problem (files left by the killed write are allowed: nothing reads them
and the next write deletes them), and that the catalogue holds exactly the images of every batch
the journal shows committed, with the batch in flight at the kill there whole or not at all. A
scenario ends with a run that is not killed, which must resume and complete the collection.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import cv2

from imgprov import presets
from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir
from imgprov.errors import IndexStoreError
from imgprov.presets import VectorIndexConf
from imgprov.search.pipeline import search
from imgprov.storage import WritableStore
from imgprov.storage.embedded.collection import Collection

KILL_POINTS = (
    "batch-start",
    "vector-file-written",
    "vector-file-renamed",
    "catalogue-recorded",
    "generation-delete",
    "retraining",
)
"""Where a write can be cut: before its transaction; after a new vector file's temporary copy is
written; once renamed into place; once the catalogue records it, before the commit; after the
commit, before the previous generation is deleted; while the IVF-PQ quantizer is being trained."""
TIMED = "time"

RETRAIN_PRESET = VectorIndexConf(
    name="faults-exact1400-ivfpq8-probe8",
    exact_max_vectors=1400,
    pq_bytes=8,
    nprobe=8,
    retrain_growth=2.0,
)
"""Exact up to 1,400 vectors (about seven small photos), IVF-PQ above, retrained at every doubling,
exact again below 700 (the two photos of `keep` hold about 600)."""

JOURNAL_READY = "ready"
CHILD_TIMEOUT_SECONDS = 300.0
MAX_RUNS_PER_KILL = 4
BATCH_SIZE = 2


@dataclass(frozen=True)
class KillPlan:
    """Where to kill one run: at `point` (KILL_POINTS) its `occurrence`-th time, or after `seconds`."""

    point: str
    occurrence: int = 1
    seconds: float = 0.0

    def describe(self) -> str:
        return f"{self.seconds:.2f} s" if self.point == TIMED else f"{self.point} #{self.occurrence}"


@dataclass(frozen=True)
class Operation:
    """`imgprov index` or `imgprov remove` (`name`) of `folders`, with `options`."""

    name: str
    folders: tuple[Path, ...]
    options: tuple[str, ...] = ()

    def files(self, folder: Path) -> frozenset[str]:
        return frozenset(str(file.resolve()) for file in folder.rglob("*.jpg"))

    def args(self, db: Path, present: frozenset[str]) -> tuple[str, ...] | None:
        """The command line, None when there is nothing to do (a removal of images not indexed):
        a removal names only the folders that still hold indexed images."""
        folders = self.folders
        if self.name == "remove":
            folders = tuple(folder for folder in folders if self.files(folder) & present)
            if not folders:
                return None
        return (self.name, "--db", str(db), *self.options, *map(str, folders))


@dataclass(frozen=True)
class ChildRun:
    """How one child ended and what its journal says."""

    killed: bool
    returncode: int
    seconds: float
    events: tuple[dict, ...]
    stderr: str


@dataclass(frozen=True)
class Verdict:
    """What `verify` found after one run."""

    findings: tuple[str, ...]
    present: frozenset[str]
    in_flight: bool
    in_flight_landed: bool
    leftovers: int


@dataclass
class Tally:
    """Counts over a whole fault-injection session."""

    runs: int = 0
    kills: Counter = field(default_factory=Counter)
    completed: int = 0
    committed_batches: int = 0
    in_flight_landed: int = 0
    in_flight_rolled_back: int = 0
    leftover_files: int = 0
    layout_events: Counter = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(self.kills.values())


@dataclass(frozen=True)
class PhotoFolders:
    """A small collection: `keep` (2 images), `half_a` and `half_b`, under `root`."""

    root: Path
    keep: Path
    half_a: Path
    half_b: Path

    def files(self, *folders: Path) -> frozenset[str]:
        return frozenset(str(path.resolve()) for folder in folders for path in folder.glob("*.jpg"))

    @property
    def everything(self) -> frozenset[str]:
        return self.files(self.keep, self.half_a, self.half_b)


def write_small_photos(root: Path, sides: tuple[int, ...] = (160, 224)) -> PhotoFolders:
    """The scikit-image photos as small JPEGs, one per photo and side: 2 in keep/, the rest split."""
    folders = PhotoFolders(root, root / "keep", root / "a", root / "b")
    for folder in (folders.keep, folders.half_a, folders.half_b):
        folder.mkdir(parents=True, exist_ok=True)
    variants = [(name, side) for side in sides for name in SKIMAGE_PHOTOS]
    for number, (name, side) in enumerate(variants):
        folder = folders.keep if number < 2 else (folders.half_a if number % 2 else folders.half_b)
        write_resized(skimage_data_dir() / name, folder / f"{Path(name).stem}-{side}.jpg", side)
    return folders


def write_resized(source: Path, target: Path, side: int) -> None:
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    scale = side / max(height, width)
    resized = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(target), resized, [cv2.IMWRITE_JPEG_QUALITY, 90])


@contextlib.contextmanager
def retrain_preset_registered() -> Iterator[None]:
    """`RETRAIN_PRESET` among the local-index presets of this process while the block runs."""
    table = cast(dict, presets.LOCAL_INDEXES)
    table[RETRAIN_PRESET.name] = RETRAIN_PRESET
    try:
        yield
    finally:
        table.pop(RETRAIN_PRESET.name, None)


class FaultHarness:
    """Runs operations on one index directory, kills them, and checks what survives."""

    def __init__(
        self, db: Path, workdir: Path, rng: random.Random, kill_points: tuple[str, ...] = KILL_POINTS
    ):
        self.db = db
        self.workdir = workdir
        self.rng = rng
        self.kill_points = kill_points
        self.present: frozenset[str] = frozenset()
        self.tally = Tally()
        self.work_seconds: dict[str, float] = {}
        self._points: list[str] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def random_plan(self, operation: Operation) -> KillPlan:
        """Half the runs a kill at a random time of the run, else at the next named point (they
        come round in a shuffled order, a point the run did not reach comes again next): one of
        the first four times it is reached in an indexing run, the first in a removal (one batch)."""
        if self.rng.random() < 0.5:
            return KillPlan(TIMED, seconds=self.rng.uniform(0.0, self.work_seconds.get(operation.name, 1.0)))
        if not self._points:
            self._points = self.rng.sample(self.kill_points, len(self.kill_points))
        point = self._points.pop()
        single = point == "retraining" or operation.name == "remove"
        return KillPlan(point, occurrence=1 if single else self.rng.randint(1, 4))

    def run(self, operation: Operation, plan: KillPlan | None) -> ChildRun | None:
        """Run one operation (killed as planned), verify the index, and count what happened; None
        when the operation has nothing to do."""
        args = operation.args(self.db, self.present)
        if args is None:
            return None
        child = run_child(args, self.workdir, plan)
        if plan is not None and plan.point != TIMED and not child.killed:
            self._points.append(plan.point)
        if not child.killed and child.returncode != 0:
            self.tally.findings.append(f"{operation.name} failed ({child.returncode}): {child.stderr[-500:]}")
        verdict = verify(self.db, self.present, child.events)
        self._count(operation, plan, child, verdict)
        self.present = verdict.present
        return child

    def churn(self, operations: list[Operation], kills: int) -> None:
        """Run the operations in turn, each at a random kill plan, until `kills` runs were killed
        (a killed index run resumes at its next turn); then run the first one to completion."""
        for turn in range(MAX_RUNS_PER_KILL * kills):
            if self.tally.killed >= kills or self.tally.findings:
                break
            operation = operations[turn % len(operations)]
            self.run(operation, self.random_plan(operation))
        self.run(operations[0], None)

    def _count(self, operation: Operation, plan: KillPlan | None, child: ChildRun, verdict: Verdict) -> None:
        tally = self.tally
        tally.runs += 1
        if child.killed and plan is not None:
            tally.kills[f"{operation.name} at {plan.point}"] += 1
        else:
            tally.completed += 1
            self.work_seconds[operation.name] = max(0.1, min(child.seconds, 20.0))
        tally.committed_batches += committed_changes(child.events)
        if verdict.in_flight:
            if verdict.in_flight_landed:
                tally.in_flight_landed += 1
            else:
                tally.in_flight_rolled_back += 1
        tally.leftover_files += verdict.leftovers
        context = (
            f"after {operation.name} killed at {plan_text(plan)}"
            if child.killed
            else f"after {operation.name}"
        )
        tally.findings += [f"{context}: {finding}" for finding in verdict.findings]

    def final_checks(self, expected: frozenset[str]) -> list[str]:
        """After the last, unkilled run: the whole collection, `imgprov check` passing, and a
        search that finds an indexed image."""
        findings = []
        if self.present != expected:
            findings.append(f"{len(expected - self.present)} images missing after the final run")
        check = run_child(("check", "--db", str(self.db)), self.workdir, None)
        if check.returncode != 0:
            findings.append(f"imgprov check failed: {check.stderr[-1000:]}")
        findings += search_finds_itself(self.db, sorted(self.present)[0])
        self.tally.layout_events.update(layout_events(self.db))
        self.tally.findings += findings
        return findings


@dataclass(frozen=True)
class Scenario:
    """A churn of `imgprov index` of the whole collection and `imgprov remove` of part of it.

    index_options: presets of the index; removes: "half" (one folder) or "most" (all but two images,
    enough to fall back from IVF-PQ to exact search); kill_points: the named points used.
    """

    name: str
    index_options: tuple[str, ...]
    removes: str
    kill_points: tuple[str, ...]


WRITE_POINTS = tuple(point for point in KILL_POINTS if point != "retraining")
SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("index-remove", ("--global", "none"), "half", WRITE_POINTS),
        Scenario(
            "retrain",
            ("--global", "none", "--vectors", RETRAIN_PRESET.name),
            "most",
            (*KILL_POINTS, "retraining", "retraining"),
        ),
        Scenario("global-descriptors", (), "half", WRITE_POINTS),
    )
}
"""index-remove: the local vector file alone; retrain: the exact -> IVF-PQ switch, growth retrains
and the switch back; global-descriptors: the default presets, two vector files per transaction."""


def run_scenario(scenario: Scenario, photos: PhotoFolders, workdir: Path, seed: int, kills: int) -> Tally:
    """Churn one scenario on a fresh index until `kills` runs were killed, then complete it."""
    harness = FaultHarness(
        fresh_directory(workdir) / "db", workdir / "run", random.Random(seed), scenario.kill_points
    )
    removed = (photos.half_b,) if scenario.removes == "half" else (photos.half_a, photos.half_b)
    index_options = ("--batch-size", str(BATCH_SIZE), "--workers", "1", *scenario.index_options)
    operations = [Operation("index", (photos.root,), index_options), Operation("remove", removed)]
    with retrain_preset_registered():
        harness.churn(operations, kills)
        harness.final_checks(photos.everything)
    return harness.tally


def plan_text(plan: KillPlan | None) -> str:
    return plan.describe() if plan is not None else "(not killed)"


def run_child(args: tuple[str, ...], workdir: Path, plan: KillPlan | None) -> ChildRun:
    """Run `imgprov ARGS` as an instrumented child and kill it as planned."""
    child = Child.start(args, workdir, plan)
    if plan is not None and plan.point == TIMED:
        kill_after(child.process, plan.seconds)
    return child.finish()


@dataclass
class Child:
    """An instrumented `imgprov` child process (`python -m tests.faults child`), once it is ready."""

    process: subprocess.Popen
    journal: Path
    stderr: Path
    ready_at: float

    @classmethod
    def start(cls, args: tuple[str, ...], workdir: Path, plan: KillPlan | None = None) -> Child:
        """Start `imgprov ARGS` (with the kill point of `plan`, if named) and wait until it is ready."""
        workdir.mkdir(parents=True, exist_ok=True)
        journal = workdir / "journal.jsonl"
        journal.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.faults", "child", "--journal", str(journal)]
        if plan is not None and plan.point != TIMED:
            command += ["--kill-at", plan.point, "--occurrence", str(plan.occurrence)]
        stderr = workdir / "stderr.txt"
        with stderr.open("w") as output:
            process = subprocess.Popen(
                [*command, "--", *args],
                stdout=output,
                stderr=output,
                cwd=project_root(),
                env=child_environment(),
            )
        return cls(process, journal, stderr, wait_until_ready(process, journal))

    def wait_for(self, event: str) -> bool:
        """Wait until the journal records `event` (e.g. "begin": the child holds the writer lock);
        False when the child ended first."""
        deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(entry["event"] == event for entry in read_journal(self.journal)):
                return True
            time.sleep(0.01)
        return False

    def finish(self) -> ChildRun:
        """Wait for the child to end; how it ended and its journal."""
        returncode = self.process.wait(timeout=CHILD_TIMEOUT_SECONDS)
        return ChildRun(
            killed=returncode == -signal.SIGKILL,
            returncode=returncode,
            seconds=time.monotonic() - self.ready_at,
            events=tuple(read_journal(self.journal)),
            stderr=self.stderr.read_text(),
        )


def child_environment() -> dict[str, str]:
    """This environment, with one OpenMP thread: on a loaded machine FAISS's spinning threads make
    quantizer training several times slower, and the fault runs are many."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(project_root())}


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def wait_until_ready(child: subprocess.Popen, journal: Path) -> float:
    """Wait until the child has imported everything and is about to run; returns that moment."""
    deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
    while time.monotonic() < deadline and child.poll() is None:
        if journal.exists() and JOURNAL_READY in journal.read_text():
            return time.monotonic()
        time.sleep(0.01)
    return time.monotonic()


def kill_after(child: subprocess.Popen, seconds: float) -> None:
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)


def read_journal(journal: Path) -> list[dict]:
    """The journal's complete lines (a line cut by the kill is dropped)."""
    if not journal.exists():
        return []
    events = []
    for line in journal.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def verify(db: Path, present_before: frozenset[str], events: tuple[dict, ...]) -> Verdict:
    """Check the index after a run against what its journal says was committed (module docstring)."""
    committed, in_flight = expected_after(present_before, events)
    try:
        collection = Collection.open(db)
    except IndexStoreError as exc:
        if committed or (in_flight and in_flight[1]):
            return Verdict((f"the index does not open: {exc}",), committed, bool(in_flight), False, 0)
        return Verdict((), committed, bool(in_flight), False, 0)
    try:
        report = collection.check(repair=False)
        actual = frozenset(record.path for record in collection.catalogue.all_images())
    finally:
        collection.close()
    findings = [*report.damage, *report.problems]
    landed = bool(in_flight) and actual == in_flight[1] and actual != committed
    if actual != committed and not landed:
        findings.append(catalogue_difference(actual, committed, in_flight))
    return Verdict(tuple(findings), actual, bool(in_flight), landed, len(report.leftovers))


def expected_after(
    present: frozenset[str], events: tuple[dict, ...]
) -> tuple[frozenset[str], tuple[frozenset[str], frozenset[str]] | None]:
    """The images after every committed batch, and (before, after) of the batch in flight if any."""
    begun: dict | None = None
    for event in events:
        if event["event"] == "begin":
            begun = event
        elif event["event"] == "commit" and begun is not None:
            present = applied(present, begun)
            begun = None
    return present, ((present, applied(present, begun)) if begun is not None else None)


def committed_changes(events: tuple[dict, ...]) -> int:
    """How many batches that changed something the journal shows committed."""
    count, begun = 0, None
    for event in events:
        if event["event"] == "begin":
            begun = event
        elif event["event"] == "commit" and begun is not None and (begun["add"] or begun["remove"]):
            count += 1
    return count


def applied(present: frozenset[str], batch: dict) -> frozenset[str]:
    return (present - frozenset(batch["remove"])) | frozenset(batch["add"])


def catalogue_difference(
    actual: frozenset[str], committed: frozenset[str], in_flight: tuple[frozenset[str], frozenset[str]] | None
) -> str:
    missing, extra = committed - actual, actual - committed
    if in_flight is not None:
        extra -= in_flight[1] - committed
    return (
        f"the catalogue holds {len(actual)} images, not the {len(committed)} committed "
        f"({len(missing)} missing, {len(extra)} unexpected: {sorted(missing | extra)[:3]})"
    )


def search_finds_itself(db: Path, path: str) -> list[str]:
    """An indexed image, searched for, must be among the matches."""
    pixels = cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    collection = Collection.open(db)
    try:
        matches = search(collection, pixels, presets.search(), stage="local").matches
    finally:
        collection.close()
    return [] if any(match.path == path for match in matches) else [f"a search for {path} does not find it"]


def layout_events(db: Path) -> Counter:
    """Vector layout changes the index logged, e.g. "Flat128 -> IVF32,PQ8"."""
    collection = Collection.open(db)
    try:
        events = collection.catalogue.events(limit=10_000)
    finally:
        collection.close()
    return Counter(
        f"{detail['from']} -> {detail['to']}" for _, kind, detail in events if kind == "vector-layout"
    )


def fresh_directory(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class _Journal:
    """The child's side of the journal: one JSON object per line, appended and never buffered."""

    def __init__(self, path: Path):
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, event: dict) -> None:
        os.write(self._descriptor, (json.dumps(event) + "\n").encode())


class _KillSwitch:
    """SIGKILLs this process the `occurrence`-th time `point` is reached."""

    def __init__(self, point: str | None, occurrence: int):
        self.point = point
        self.occurrence = occurrence
        self.reached_times = 0

    def reached(self, point: str) -> None:
        if point == self.point:
            self.reached_times += 1
            if self.reached_times == self.occurrence:
                os.kill(os.getpid(), signal.SIGKILL)


def _install_child_hooks(journal: _Journal, switch: _KillSwitch) -> None:
    """Wrap the functions the kill points and the journal watch (in the child process only)."""
    import faiss

    from imgprov.storage.distributed.store import DistributedStore
    from imgprov.storage.embedded import vectors
    from imgprov.storage.embedded.catalogue import Catalogue

    for store in (Collection, DistributedStore):
        _wrap(store, "apply", lambda original: _journaled_apply(original, journal, switch))
    _wrap(faiss, "write_index", lambda original: _after(original, switch, "vector-file-written"))
    _wrap(os, "replace", lambda original: _after_replace(original, switch))
    _wrap(Catalogue, "record_vector_state", lambda original: _after(original, switch, "catalogue-recorded"))
    _wrap(pathlib.Path, "unlink", lambda original: _before_generation_delete(original, switch))
    _wrap(vectors, "train_ivfpq", lambda original: _before(original, switch, "retraining"))


def _wrap(owner: object, name: str, wrapper: Callable[[Callable], Callable]) -> None:
    setattr(owner, name, wrapper(getattr(owner, name)))


def _journaled_apply(original: Callable, journal: _Journal, switch: _KillSwitch) -> Callable:
    def apply(self: WritableStore, *, add=(), remove=()) -> list[int]:
        switch.reached("batch-start")
        removed = [record.path for record in self.images(list(remove)).values()]
        journal.write({"event": "begin", "add": [image.path for image in add], "remove": removed})
        ids = original(self, add=add, remove=remove)
        journal.write({"event": "commit"})
        return ids

    return apply


def _after(original: Callable, switch: _KillSwitch, point: str) -> Callable:
    def call(*args, **kwargs):
        result = original(*args, **kwargs)
        switch.reached(point)
        return result

    return call


def _before(original: Callable, switch: _KillSwitch, point: str) -> Callable:
    def call(*args, **kwargs):
        switch.reached(point)
        return original(*args, **kwargs)

    return call


def _after_replace(original: Callable, switch: _KillSwitch) -> Callable:
    def replace(source, target, *args, **kwargs):
        original(source, target, *args, **kwargs)
        if str(target).endswith(".faiss"):
            switch.reached("vector-file-renamed")

    return replace


def _before_generation_delete(original: Callable, switch: _KillSwitch) -> Callable:
    def unlink(self: pathlib.Path, *args, **kwargs) -> None:
        if self.name.endswith(".faiss"):
            switch.reached("generation-delete")
        original(self, *args, **kwargs)

    return unlink


def child_main(argv: list[str]) -> None:
    """`python -m tests.faults child --journal J [--kill-at POINT --occurrence N] -- ARGS...`."""
    separator = argv.index("--")
    options, cli_args = argv[:separator], argv[separator + 1 :]
    settings = dict(zip(options[::2], options[1::2], strict=True))
    from imgprov.cli.app import main as cli_main

    journal = _Journal(Path(settings["--journal"]))
    switch = _KillSwitch(settings.get("--kill-at"), int(settings.get("--occurrence", "1")))
    cast(dict, presets.LOCAL_INDEXES)[RETRAIN_PRESET.name] = RETRAIN_PRESET
    _install_child_hooks(journal, switch)
    journal.write({"event": JOURNAL_READY})
    sys.argv = ["imgprov", *cli_args]
    cli_main()


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(sys.argv[2:])
