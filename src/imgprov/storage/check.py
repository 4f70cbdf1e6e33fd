"""`imgprov check`: do a store's catalogue and its vectors agree? Repair what does not.

Each store checks itself (`Store.check`: `imgprov.storage.embedded.check`,
`imgprov.storage.distributed.check`) into one `CheckReport` with three kinds of findings:
- damage: the catalogue itself is inconsistent (an image lacks its features, a blob has the wrong
  size; for SQLite also its integrity check). The catalogue is the source of truth, so nothing can
  rebuild it: restore a backup.
- problems: the vectors disagree with the catalogue (a vector file or Milvus collection missing,
  damaged, of the wrong size, layout or ids). `--repair` rebuilds every vector set from the catalogue.
- leftovers: vector files no catalogue entry names, left by an interrupted write (or being written
  by a writer right now). They change nothing a reader sees; the next write or `--repair` deletes them.
The catalogue checks both stores share are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imgprov.extract.sscd import EMBEDDING_DIM
from imgprov.presets import LocalStorageConf
from imgprov.storage.originals import orphaned_originals

if TYPE_CHECKING:
    from imgprov.storage.catalogue import SqlConnection
    from imgprov.storage.protocol import ImageCatalogue, Store


def catalogue_checks(storage: LocalStorageConf) -> tuple[tuple[str, str], ...]:
    """(query counting bad rows, finding) pairs over the keypoints and descriptors, whose blobs
    hold `storage.geometry_bytes` and `storage.descriptor_bytes` per keypoint."""
    return (
        (
            "SELECT COUNT(*) FROM images i LEFT JOIN keypoints k ON k.image_id = i.id "
            "WHERE k.image_id IS NULL",
            "images without keypoints",
        ),
        (
            "SELECT COUNT(*) FROM images i LEFT JOIN descriptors d ON d.image_id = i.id "
            "WHERE d.image_id IS NULL",
            "images without descriptors",
        ),
        (
            f"SELECT COUNT(*) FROM keypoints WHERE length(geometry) != count * {storage.geometry_bytes}",
            "keypoint geometry of the wrong size",
        ),
        (
            "SELECT COUNT(*) FROM keypoints k JOIN descriptors d ON d.image_id = k.image_id "
            f"WHERE length(d.data) != k.count * {storage.descriptor_bytes}",
            "descriptors whose number differs from the keypoints'",
        ),
    )


GLOBAL_CHECKS = (
    (
        "SELECT COUNT(*) FROM images i LEFT JOIN global_vectors g ON g.image_id = i.id "
        "WHERE g.image_id IS NULL",
        "images without a global embedding",
    ),
    (
        f"SELECT COUNT(*) FROM global_vectors WHERE length(data) != {EMBEDDING_DIM * 4}",
        "global embeddings of the wrong size",
    ),
)
OBJECT_CHECKS = (
    (
        "SELECT COUNT(*) FROM images i LEFT JOIN objects o ON o.image_id = i.id WHERE o.image_id IS NULL",
        "images without objects",
    ),
    (
        "SELECT COUNT(*) FROM objects WHERE length(boxes) != count * 16 "
        "OR (count > 0 AND length(vectors) % count != 0)",
        "object boxes or vectors of the wrong size",
    ),
)


@dataclass
class CheckReport:
    """Findings of a check (see the module docstring); `repaired` lists what was fixed."""

    images: int = 0
    vectors: dict[str, int] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the index is sound (now): no damage, and no problem left unrepaired."""
        return not self.damage and (not self.problems or bool(self.repaired))

    def lines(self) -> list[str]:
        if self.damage:
            status = "DAMAGED"
        elif self.problems:
            status = "repaired" if self.repaired else "PROBLEMS FOUND"
        else:
            status = "ok"
        counts = ", ".join(f"{count} {name} vectors" for name, count in self.vectors.items())
        lines = [f"{status}: {self.images} images, {counts}"]
        lines += [f"damage: {finding}" for finding in self.damage]
        lines += [f"problem: {problem}" for problem in self.problems]
        lines += [
            f"note: {name} is named by no catalogue entry (an interrupted write's, or one in progress); "
            "the next write or `imgprov check --repair` deletes it"
            for name in self.leftovers
        ]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"repaired: {action}" for action in self.repaired]
        if self.damage:
            lines.append("the catalogue itself is damaged; restore the index directory from a backup")
        elif self.problems and not self.repaired:
            lines.append("run `imgprov check --repair` (with the same --db) to rebuild the vectors")
        return lines


def feature_damage(store: Store, connection: SqlConnection) -> list[str]:
    """The inconsistent feature rows of a store's catalogue (the images of `images`), one finding
    per kind: the local features always, the global embeddings and objects where the store keeps them."""
    checks = catalogue_checks(store.local_storage)
    checks += GLOBAL_CHECKS if store.global_set is not None else ()
    checks += OBJECT_CHECKS if store.object_set is not None else ()
    damage = []
    for query, finding in checks:
        count = int(connection.execute(query).fetchone()[0])
        if count:
            damage.append(f"{count} {finding}")
    return damage


def check_originals(report: CheckReport, db: Path | str, catalogue: ImageCatalogue, *, repair: bool) -> None:
    """Add the uploaded originals no record points to (`imgprov.storage.originals`) to `report` as
    notes, and delete them when repairing (under the writer lock, so no upload is in progress)."""
    for path in orphaned_originals(db, catalogue):
        if repair:
            path.unlink(missing_ok=True)
            report.repaired.append(f"deleted {path.name}, an upload no image record points to")
        else:
            report.notes.append(
                f"{path.name} in the originals folder is an upload no image record points to "
                "(a server stopped before indexing it); `imgprov check --repair` deletes it"
            )
