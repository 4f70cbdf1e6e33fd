"""The catalogue queries both stores share: meta keys, events and the image records.

A catalogue is an SQL connection (`SqlConnection`: sqlite3's, or the distributed store's
`SqlDatabase`) over the tables of `imgprov.storage.schema`, read through `images`: every image in
the embedded store, the committed ones in the distributed store (a view). Each store supplies
its own transactions.
"""

from __future__ import annotations

import abc
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from imgprov.storage.batches import batched
from imgprov.storage.records import ImageRecord
from imgprov.storage.schema import IMAGE_COLUMNS

IN_LIST = 500
"""Most ids in one `IN (...)` list (SQLite's default allows 999 parameters)."""


class SqlConnection(Protocol):
    """What the catalogue queries need of a connection: DB-API `execute` with `?` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


class SqlCatalogue(abc.ABC):
    """The shared queries over one catalogue; `root` names the store in messages."""

    def __init__(self, root: Any, connection: SqlConnection):
        self.root = root
        self.connection = connection

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """One write transaction, rolled back on any exception; yields the connection."""

    @abc.abstractmethod
    def close(self) -> None: ...

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
        """The latest `limit` events, newest first: (time, kind, detail)."""
        rows = self.connection.execute(
            "SELECT time, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(row[0], row[1], json.loads(row[2])) for row in rows]

    def image_by_path(self, path: str) -> ImageRecord | None:
        row = self.connection.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE path = ?", (path,)
        ).fetchone()
        return ImageRecord(*row) if row else None

    def images_by_ids(self, ids: list[int]) -> dict[int, ImageRecord]:
        rows = rows_with_ids(self.connection, f"SELECT {IMAGE_COLUMNS} FROM images WHERE id", ids)
        return {row[0]: ImageRecord(*row) for row in rows}

    def image_with_sha256(self, sha256: str) -> ImageRecord | None:
        row = self.connection.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,)
        ).fetchone()
        return ImageRecord(*row) if row else None

    def images_under(self, prefix: str) -> list[ImageRecord]:
        """Images whose path is `prefix` or lies in the folder `prefix`."""
        folder = prefix.rstrip("/") + "/"
        rows = self.connection.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE path = ? OR substr(path, 1, ?) = ? ORDER BY id",
            (prefix, len(folder), folder),
        ).fetchall()
        return [ImageRecord(*row) for row in rows]

    def all_images(self) -> list[ImageRecord]:
        rows = self.connection.execute(f"SELECT {IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
        return [ImageRecord(*row) for row in rows]

    def image_count(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM images").fetchone()[0])


def rows_with_ids(connection: SqlConnection, query: str, ids: Sequence[int]) -> Iterator[tuple]:
    """The rows of `query` (ending with the id column to match, e.g. "... WHERE image_id") whose id
    is one of `ids`, asked `IN_LIST` ids at a time."""
    for chunk in batched(ids, IN_LIST):
        marks = ",".join("?" * len(chunk))
        yield from connection.execute(f"{query} IN ({marks})", chunk).fetchall()
