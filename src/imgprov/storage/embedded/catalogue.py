"""The embedded index directory: a SQLite catalogue (WAL) plus FAISS vector files.

SQLite is the source of truth: it holds every image, its keypoint geometry and its descriptors, and
names the vector file of each vector set with the number of vectors it must hold. A vector file is
derived data. Every write goes: new vector file written and fsynced under a new generation name,
then one SQLite transaction that records it, then the old file is deleted. A crash at any point
leaves the previous generation readable and `imgprov check --repair` can rebuild any vector file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from imgprov.errors import IndexBusy, IndexCorrupt, IndexStoreError, IndexUnwritable
from imgprov.storage.records import ImageRecord, VectorFileState

SCHEMA_VERSION = "1"
CATALOGUE = "imgprov.sqlite"
LOCK_FILE = "write.lock"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    mtime REAL NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE TABLE IF NOT EXISTS keypoints (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    count INTEGER NOT NULL,
    geometry BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS descriptors (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS global_vectors (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    count INTEGER NOT NULL,
    boxes BLOB NOT NULL,
    vectors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    document TEXT NOT NULL,
    store BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def default_db_dir() -> Path:
    """`$XDG_DATA_HOME/imgprov`, else `~/.local/share/imgprov`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imgprov"


class Catalogue:
    """A connection to the SQLite catalogue of one index directory."""

    def __init__(self, root: Path, connection: sqlite3.Connection):
        self.root = root
        self.connection = connection

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

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.connection.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def log_event(self, kind: str, detail: dict) -> None:
        self.connection.execute(
            "INSERT INTO events (time, kind, detail) VALUES (?, ?, ?)",
            (time.time(), kind, json.dumps(detail)),
        )

    def events(self, limit: int = 20) -> list[tuple[float, str, dict]]:
        rows = self.connection.execute(
            "SELECT time, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(row[0], row[1], json.loads(row[2])) for row in rows]

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

    def image_by_path(self, path: str) -> ImageRecord | None:
        row = self.connection.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE path = ?", (path,)
        ).fetchone()
        return ImageRecord(*row) if row else None

    def images_by_ids(self, ids: list[int]) -> dict[int, ImageRecord]:
        records: dict[int, ImageRecord] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk
            ).fetchall()
            records.update((row[0], ImageRecord(*row)) for row in rows)
        return records

    def image_with_sha256(self, sha256: str) -> ImageRecord | None:
        row = self.connection.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,)
        ).fetchone()
        return ImageRecord(*row) if row else None

    def images_under(self, prefix: str) -> list[ImageRecord]:
        """Images whose path is `prefix` or lies in the folder `prefix`."""
        folder = prefix.rstrip("/") + "/"
        rows = self.connection.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE path = ? OR substr(path, 1, ?) = ? ORDER BY id",
            (prefix, len(folder), folder),
        ).fetchall()
        return [ImageRecord(*row) for row in rows]

    def all_images(self) -> list[ImageRecord]:
        rows = self.connection.execute(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
        return [ImageRecord(*row) for row in rows]

    def image_count(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM images").fetchone()[0])

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


_IMAGE_COLUMNS = "id, path, sha256, size_bytes, width, height, format, mtime, indexed_at"


def _table_names(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _add_missing_tables(connection: sqlite3.Connection, *, create: bool) -> None:
    """Create the schema, or the tables a newer imgprov added to an existing imgprov catalogue.

    One transaction creates every table and stamps the schema version, so a process killed while
    creating an index leaves either nothing or a complete empty index.
    """
    existing = _table_names(connection)
    wanted = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))
    if wanted <= existing or not (create or "meta" in existing):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            connection.execute(statement)
        connection.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", SCHEMA_VERSION), ("created_at", str(time.time()))],
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class WriterLock:
    """An exclusive advisory lock on the index directory (on its file `name`): one writer at a time."""

    def __init__(self, root: Path, wait_seconds: float, name: str = LOCK_FILE):
        self.path = root / name
        self.wait_seconds = wait_seconds
        self._handle = None

    def __enter__(self) -> WriterLock:
        try:
            handle = self.path.open("a+")
        except OSError as exc:
            raise IndexUnwritable(f"{self.path.parent}: cannot write ({exc.strerror or exc})") from None
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise IndexBusy(
                        f"{self.path.parent}: another imgprov process is writing to this index; "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.1)
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _make_directory(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexUnwritable(f"{root}: cannot create index directory ({exc.strerror or exc})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise IndexUnwritable(f"{root}: index directory is not writable")


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
