"""`imgprov check`: do the catalogue and the vector files agree? Repair what does not."""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from imgprov.collection import Collection
from imgprov.errors import IndexCorrupt
from imgprov.vectors import read_index, split_ids


@dataclass
class CheckReport:
    """Findings of a check: `problems` are what disagrees, `repaired` what was fixed."""

    images: int = 0
    vectors: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems or bool(self.repaired)

    def lines(self) -> list[str]:
        status = "ok" if not self.problems else ("repaired" if self.repaired else "PROBLEMS FOUND")
        lines = [f"{status}: {self.images} images, {self.vectors} local vectors"]
        lines += [f"problem: {problem}" for problem in self.problems]
        lines += [f"repaired: {action}" for action in self.repaired]
        if self.problems and not self.repaired:
            lines.append("run `imgprov check --repair` (with the same --db) to rebuild the vector files")
        return lines


def check_collection(collection: Collection, *, repair: bool) -> CheckReport:
    """Check SQLite integrity, the vector file's existence, count and ids against the catalogue."""
    catalogue = collection.catalogue
    report = CheckReport(images=catalogue.image_count())
    integrity = catalogue.connection.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        report.problems.append(f"SQLite integrity check: {integrity}")
        return report
    report.problems += _vector_problems(collection)
    stray = [
        path.name
        for path in collection.root.iterdir()
        if path.name.endswith((".faiss", ".faiss.tmp")) and path.name != collection.local.state.file
    ]
    report.problems += [f"stray file {name} (left by an interrupted write)" for name in sorted(stray)]
    if repair and report.problems:
        collection.rebuild_local_vectors()
        report.repaired.append(f"rebuilt local vectors into {collection.local.state.file}")
        removed = collection.remove_stray_files()
        report.repaired += [f"deleted {name}" for name in removed]
    report.vectors = collection.local.state.count
    return report


def _vector_problems(collection: Collection) -> list[str]:
    catalogue = collection.catalogue
    state = collection.local.state
    expected = int(
        catalogue.connection.execute("SELECT COALESCE(SUM(count), 0) FROM keypoints").fetchone()[0]
    )
    if state.count != expected:
        return [f"catalogue records {state.count} local vectors but the images hold {expected} keypoints"]
    if not state.file:
        return [] if expected == 0 else ["no local vector file is recorded"]
    path = collection.root / state.file
    if not path.is_file():
        return [f"local vector file {state.file} is missing"]
    try:
        index = read_index(path, state.count)
    except IndexCorrupt as exc:
        return [str(exc)]
    return _id_problems(collection, index)


def _id_problems(collection: Collection, index: faiss.Index) -> list[str]:
    """Every image's vectors present, and no vector of an unknown image."""
    image_ids, _ = split_ids(stored_ids(index))
    found, counts = np.unique(image_ids, return_counts=True)
    rows = collection.catalogue.connection.execute("SELECT image_id, count FROM keypoints WHERE count > 0")
    if dict(rows.fetchall()) != dict(zip(found.tolist(), counts.tolist(), strict=True)):
        return ["the local vector file's ids do not match the catalogue's images"]
    return []


def stored_ids(index: faiss.Index) -> np.ndarray:
    """(ntotal,) int64 ids held by an IDMap or IVF index."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(number), invlists.list_size(number)).copy()
        for number in range(invlists.nlist)
        if invlists.list_size(number)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
