"""The SQL catalogue of a distributed store (PostgreSQL, or one SQLite file).

Its schema is the shared one (`imgprov.storage.schema`) with the image rows in `image_rows`, each
with a `state`: `pending` while a write inserts its vectors into Milvus, `committed` once readers
may see it, `removing` while a removal deletes its vectors. Readers query the view `images` (the
committed rows), so the shared catalogue queries see committed images only. Ids are handed out
from the meta key `next_image_id`, so that a copied collection keeps its ids.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from imgprov.errors import IndexStoreError
from imgprov.storage.catalogue import SqlCatalogue
from imgprov.storage.distributed.sql import SqlDatabase
from imgprov.storage.schema import IMAGE_COLUMNS, SCHEMA_VERSION, ImageTable, catalogue_schema

COMMITTED = "committed"
PENDING = "pending"
REMOVING = "removing"

IMAGE_ROWS = ImageTable(
    "image_rows",
    id_type="INTEGER PRIMARY KEY",
    path_type="TEXT NOT NULL",
    extra_columns=("state TEXT NOT NULL",),
    statements=(
        "CREATE UNIQUE INDEX IF NOT EXISTS image_rows_path ON image_rows (path) WHERE state = 'committed'",
        "CREATE INDEX IF NOT EXISTS image_rows_sha256 ON image_rows (sha256)",
        "CREATE INDEX IF NOT EXISTS image_rows_state ON image_rows (state)",
        f"CREATE VIEW images AS\n    SELECT {IMAGE_COLUMNS}\n    FROM image_rows WHERE state = 'committed'",
    ),
)
"""The distributed store's image rows: the shared columns plus `state`; one committed image per
path; the view `images` of the committed ones."""
_TABLE_EXISTS = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
    "postgresql": "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = ?",
}


class DistributedCatalogue(SqlCatalogue):
    """The SQL catalogue of a distributed store, through `SqlDatabase` (PostgreSQL or SQLite)."""

    root: str
    connection: SqlDatabase

    def __init__(self, root: str, database: SqlDatabase):
        super().__init__(root, database)
        self.database = database

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlDatabase]:
        with self.database.transaction():
            yield self.database

    def close(self) -> None:
        self.database.close()

    def exists(self) -> bool:
        return self.database.execute(_TABLE_EXISTS[self.database.dialect], ("meta",)).fetchone() is not None

    def create(self) -> None:
        """Create every table and stamp the schema version, in one transaction."""
        with self.transaction() as db:
            if self.exists():
                return
            for statement in catalogue_schema(IMAGE_ROWS):
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("created_at", str(time.time())),
                    ("next_image_id", "1"),
                ],
            )

    def check_schema(self) -> None:
        if not self.exists():
            raise IndexStoreError(
                f"{self.root}: no imgprov collection here (run `imgprov index --db URL PATH...`)"
            )
        version = self.meta("schema_version")
        if version != SCHEMA_VERSION:
            raise IndexStoreError(
                f"{self.root}: collection schema version {version!r}, expected {SCHEMA_VERSION}"
            )

    def hidden_ids(self) -> list[int]:
        """Images being written or removed: no reader may see them, nor their vectors."""
        rows = self.database.execute("SELECT id FROM image_rows WHERE state <> ?", (COMMITTED,)).fetchall()
        return [int(row[0]) for row in rows]

    def ids_in_state(self, state: str) -> list[int]:
        rows = self.database.execute("SELECT id FROM image_rows WHERE state = ?", (state,)).fetchall()
        return [int(row[0]) for row in rows]
