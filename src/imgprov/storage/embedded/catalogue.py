"""The catalogue of an index directory: one SQLite file (WAL mode) beside the FAISS vector files.

It holds every image and its features (the tables of `imgprov.storage.schema`), the presets, the
events, and per vector set the file of its current generation with its vector count and layout
(`VectorFileState`). Readers read a snapshot of one committed write (`begin_snapshot`); writers
write in `BEGIN IMMEDIATE` transactions. How a write swaps vector files is `Collection`'s.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from imgprov.errors import IndexCorrupt, IndexStoreError, IndexUnwritable
from imgprov.storage.catalogue import SqlCatalogue
from imgprov.storage.records import VectorFileState
from imgprov.storage.schema import SCHEMA_VERSION, ImageTable, catalogue_schema, table_names

CATALOGUE = "imgprov.sqlite"

IMAGES = ImageTable(
    "images",
    id_type="INTEGER PRIMARY KEY AUTOINCREMENT",
    path_type="TEXT NOT NULL UNIQUE",
    statements=("CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256)",),
)
"""The embedded store's image rows: ids chosen by SQLite, one image per path."""


def default_db_dir() -> Path:
    """`$XDG_DATA_HOME/imgprov`, else `~/.local/share/imgprov`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imgprov"


class Catalogue(SqlCatalogue):
    """A connection to the SQLite catalogue of one index directory."""

    root: Path
    connection: sqlite3.Connection

    @classmethod
    def open(cls, root: Path, *, create: bool) -> Catalogue:
        path = root / CATALOGUE
        if not create and not path.is_file():
            raise IndexStoreError(f"{root}: no imgprov index here (run `imgprov index --db {root} PATH...`)")
        if create:
            _make_directory(root)
        try:
            connection = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA busy_timeout = 60000")
            connection.execute("PRAGMA synchronous = FULL")
            if create:
                connection.execute("PRAGMA journal_mode = WAL")
            _add_missing_tables(connection, create=create)
            catalogue = cls(root, connection)
            catalogue._check_schema()
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"{path}: not a readable imgprov catalogue ({exc})") from None
        return catalogue

    def close(self) -> None:
        self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def begin_snapshot(self) -> None:
        """Start a read transaction that lasts until `end_snapshot`.

        Every query in between sees the state committed when it started, whatever writers commit
        meanwhile (WAL mode: readers never block the writer, nor the writer them).
        """
        self.connection.execute("BEGIN")
        # A deferred BEGIN takes its snapshot at the first read, so read now.
        self.connection.execute("SELECT COUNT(*) FROM meta").fetchone()

    def end_snapshot(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    def vector_state(self, name: str) -> VectorFileState:
        return VectorFileState(
            name=name,
            file=self.meta(f"vectors.{name}.file"),
            count=int(self.meta(f"vectors.{name}.count", "0") or 0),
            layout=self.meta(f"vectors.{name}.layout", "none") or "none",
            trained_on=int(self.meta(f"vectors.{name}.trained_on", "0") or 0),
        )

    def vector_files(self) -> dict[str, str]:
        """The file each vector set's current generation is in, by set name."""
        rows = self.connection.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'vectors.%.file'"
        ).fetchall()
        return {key.removeprefix("vectors.").removesuffix(".file"): value for key, value in rows}

    def record_vector_state(self, state: VectorFileState) -> None:
        self.set_meta(f"vectors.{state.name}.file", state.file or "")
        self.set_meta(f"vectors.{state.name}.count", str(state.count))
        self.set_meta(f"vectors.{state.name}.layout", state.layout)
        self.set_meta(f"vectors.{state.name}.trained_on", str(state.trained_on))

    def _check_schema(self) -> None:
        tables = _table_names(self.connection)
        if "meta" not in tables:
            if not tables:
                # What a first `imgprov index` killed before its first commit leaves behind.
                raise IndexStoreError(
                    f"{self.root}: no imgprov index here yet (run `imgprov index --db {self.root} PATH...`)"
                )
            raise IndexCorrupt(f"{self.root / CATALOGUE}: an SQLite file, but not an imgprov catalogue")
        version = self.meta("schema_version")
        if version != SCHEMA_VERSION:
            raise IndexCorrupt(f"{self.root}: index schema version {version!r}, expected {SCHEMA_VERSION}")


def _table_names(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _add_missing_tables(connection: sqlite3.Connection, *, create: bool) -> None:
    """Create the schema, or the tables a newer imgprov added to an existing imgprov catalogue.

    One transaction creates every table and stamps the schema version, so a process killed while
    creating an index leaves either nothing or a complete empty index.
    """
    existing = _table_names(connection)
    wanted = table_names(IMAGES)
    if wanted <= existing or not (create or "meta" in existing):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in catalogue_schema(IMAGES):
            connection.execute(statement)
        connection.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", SCHEMA_VERSION), ("created_at", str(time.time()))],
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _make_directory(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexUnwritable(f"{root}: cannot create index directory ({exc.strerror or exc})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise IndexUnwritable(f"{root}: index directory is not writable")
