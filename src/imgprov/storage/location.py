"""Where a collection lives, as given to `--db`: an index directory or a distributed store's URL.

- a directory path: the embedded store (SQLite catalogue + FAISS files in that directory);
- `milvus://HOST:PORT/NAME?sql=postgresql://USER@HOST:PORT/DB` or `?sql=sqlite:///FILE`: vectors
  in the Milvus server at HOST:PORT (collections `NAME_local`, `NAME_global`, `NAME_objects`),
  images, keypoints, presets and events in the SQL database (PostgreSQL schema `NAME`, or one
  SQLite file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from imgprov.errors import IndexStoreError

MILVUS_SCHEME = "milvus"
DEFAULT_MILVUS_PORT = 19530
SQL_SCHEMES = ("postgresql", "postgres", "sqlite")
COLLECTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
"""A collection name: a Milvus collection-name prefix and a PostgreSQL schema name at once."""
VALID_FORMS = (
    "a directory, or milvus://HOST:PORT/NAME?sql=postgresql://USER@HOST:PORT/DB "
    "or milvus://HOST:PORT/NAME?sql=sqlite:///FILE"
)


class LocationError(IndexStoreError):
    """A `--db` value that names no store imgprov knows."""


@dataclass(frozen=True)
class Location:
    """A parsed `--db`: `path` for the embedded store, else Milvus `host`, `port`, collection `name`
    and the catalogue's `sql` URL."""

    text: str
    path: Path | None = None
    host: str = ""
    port: int = 0
    name: str = ""
    sql: str = ""

    @property
    def embedded(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        """The location as shown to users: a URL without any password."""
        if self.path is not None:
            return str(self.path)
        return f"{MILVUS_SCHEME}://{self.host}:{self.port}/{self.name}?sql={_without_password(self.sql)}"


def parse_location(db: str | Path) -> Location:
    """Parse a `--db` value; an unknown scheme or a malformed URL raises `LocationError`."""
    text = str(db)
    if isinstance(db, Path) or "://" not in text:
        return Location(text=text, path=Path(text).expanduser())
    parts = urlsplit(text)
    if parts.scheme != MILVUS_SCHEME:
        raise LocationError(
            f"--db {_without_password(text)}: unknown store {parts.scheme!r}; use {VALID_FORMS}"
        )
    try:
        port = parts.port or DEFAULT_MILVUS_PORT
    except ValueError:
        raise LocationError(f"--db {_without_password(text)}: the port is not a number") from None
    name = parts.path.strip("/")
    if not parts.hostname or not COLLECTION_NAME.fullmatch(name):
        raise LocationError(
            f"--db {_without_password(text)}: expected milvus://HOST:PORT/NAME with a collection NAME of "
            "letters, digits and _ starting with a letter"
        )
    sql = parse_qs(parts.query).get("sql", [""])[-1]
    if urlsplit(sql).scheme not in SQL_SCHEMES:
        raise LocationError(
            f"--db {_without_password(text)}: name the catalogue's SQL database with "
            "?sql=postgresql://USER@HOST:PORT/DB or ?sql=sqlite:///FILE"
        )
    return Location(text=text, host=parts.hostname, port=port, name=name, sql=sql)


def _without_password(url: str) -> str:
    """`url` with any password replaced by ***, also inside a nested ?sql= URL. A URL without a host
    (`sqlite:///FILE`) holds no password and comes back as it is: `urlunsplit` would drop its //."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    query = parse_qs(parts.query)
    if "sql" in query:
        parts = parts._replace(query="sql=" + _without_password(query["sql"][-1]))
    return urlunsplit(parts)
