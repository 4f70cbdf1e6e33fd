"""The catalogue schema both stores share, and the statements that write an image's rows.

Every catalogue has the tables `meta` (key/value: schema version, presets, vector-set states),
the image rows, one row per image in each feature table (`keypoints`, `descriptors`,
`global_vectors`, `objects`, `credentials`) and `events`. A store names its image table and adds
its own columns and statements (`ImageTable`): the embedded one an autoincrement id and a unique
path, the distributed one a `state` column and a view `images` of the committed rows. Statements
use SQLite's type names and `?` placeholders (`imgprov.storage.distributed.sql` rewrites them for
PostgreSQL).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgprov.extract.local_codec import LocalCodec
from imgprov.storage.records import NewImage

SCHEMA_VERSION = "1"
IMAGE_COLUMNS = "id, path, sha256, size_bytes, width, height, format, mtime, indexed_at"
"""The columns of an `ImageRecord`, in its field order."""
IMAGE_FIELDS = (
    "sha256 TEXT NOT NULL",
    "size_bytes INTEGER NOT NULL",
    "width INTEGER NOT NULL",
    "height INTEGER NOT NULL",
    "format TEXT NOT NULL",
    "mtime REAL NOT NULL",
    "indexed_at REAL NOT NULL",
)
"""The image columns after `id` and `path`, whose types both stores share."""
FEATURE_TABLES = {
    "keypoints": ("count INTEGER NOT NULL", "geometry BLOB NOT NULL"),
    "descriptors": ("data BLOB NOT NULL",),
    "global_vectors": ("data BLOB NOT NULL",),
    "objects": ("count INTEGER NOT NULL", "boxes BLOB NOT NULL", "vectors BLOB NOT NULL"),
    "credentials": ("state TEXT NOT NULL", "document TEXT NOT NULL", "store BLOB NOT NULL"),
}
"""Per-image feature tables (keyed by `image_id`) and their columns."""
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
EVENTS = (
    "id INTEGER PRIMARY KEY AUTOINCREMENT",
    "time REAL NOT NULL",
    "kind TEXT NOT NULL",
    "detail TEXT NOT NULL",
)


@dataclass(frozen=True)
class ImageTable:
    """How a store keeps its image rows: the table's name, the types of `id` and `path`, columns
    added after the shared ones, and statements (indexes, views) run right after the table."""

    name: str
    id_type: str
    path_type: str
    extra_columns: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()


def catalogue_schema(images: ImageTable) -> list[str]:
    """The statements that create a catalogue whose image rows live as `images` says."""
    image_columns = (f"id {images.id_type}", f"path {images.path_type}", *IMAGE_FIELDS, *images.extra_columns)
    feature_tables = [
        _table(
            name, (f"image_id INTEGER PRIMARY KEY REFERENCES {images.name} (id) ON DELETE CASCADE", *columns)
        )
        for name, columns in FEATURE_TABLES.items()
    ]
    return [
        META,
        _table(images.name, image_columns),
        *images.statements,
        *feature_tables,
        _table("events", EVENTS),
    ]


def table_names(images: ImageTable) -> set[str]:
    """The tables `catalogue_schema(images)` creates."""
    return {"meta", images.name, *FEATURE_TABLES, "events"}


def _table(name: str, columns: tuple[str, ...]) -> str:
    body = ",\n".join(f"    {column}" for column in columns)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n)"


def insert_image(db: Any, table: str, image_id: int | None, image: NewImage, **extra: object) -> Any:
    """Insert one image's row into `table` (with the `extra` columns) through a DB-API connection
    with `?` placeholders; `image_id` None lets the database choose. Returns the cursor."""
    columns = [*IMAGE_COLUMNS.split(", "), *extra]
    values = (
        image_id,
        image.path,
        image.sha256,
        image.size_bytes,
        image.width,
        image.height,
        image.format,
        image.mtime,
        image.indexed_at if image.indexed_at is not None else time.time(),
        *extra.values(),
    )
    marks = ", ".join("?" * len(columns))
    return db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)


def insert_features(
    db: Any, image_id: int, image: NewImage, codec: LocalCodec, with_global: bool, with_objects: bool
) -> None:
    """Insert one image's feature rows (keypoints and descriptors encoded by `codec`, credentials,
    and its global embedding and objects where the collection keeps them) through a DB-API
    connection with `?` placeholders."""
    geometry, descriptors = codec.encode(image.features)
    db.execute(
        "INSERT INTO keypoints (image_id, count, geometry) VALUES (?, ?, ?)",
        (image_id, len(image.features), geometry),
    )
    db.execute("INSERT INTO descriptors (image_id, data) VALUES (?, ?)", (image_id, descriptors))
    if image.credentials is not None:
        db.execute(
            "INSERT INTO credentials (image_id, state, document, store) VALUES (?, ?, ?, ?)",
            (
                image_id,
                image.credentials.state.value,
                json.dumps(image.credentials.to_json()),
                image.credentials.raw_store,
            ),
        )
    if image.embedding is not None and with_global:
        db.execute(
            "INSERT INTO global_vectors (image_id, data) VALUES (?, ?)",
            (image_id, np.ascontiguousarray(image.embedding, dtype=np.float32).tobytes()),
        )
    if image.objects is not None and with_objects:
        db.execute(
            "INSERT INTO objects (image_id, count, boxes, vectors) VALUES (?, ?, ?, ?)",
            (
                image_id,
                len(image.objects),
                np.ascontiguousarray(image.objects.boxes, dtype=np.float32).tobytes(),
                np.ascontiguousarray(image.objects.vectors, dtype=np.float32).tobytes(),
            ),
        )
