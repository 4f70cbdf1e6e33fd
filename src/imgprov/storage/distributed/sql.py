"""One small adapter over the two SQL databases a distributed store's catalogue can live in:
PostgreSQL (psycopg, the distributed case) and SQLite (one file, sqlite3).

Statements are written once with `?` placeholders and SQLite's type names; the adapter rewrites
them for PostgreSQL. Each collection's tables live in a PostgreSQL schema of its own (its name),
so one database holds many collections. Writers exclude each other with a PostgreSQL advisory lock
on the collection, or an exclusive lock on a file beside the SQLite database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from imgprov.errors import IndexBusy, IndexStoreError, IndexUnwritable
from imgprov.storage.writer_lock import WriterLock

POSTGRES_TYPES = (
    ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
    ("INTEGER", "BIGINT"),
    ("BLOB", "BYTEA"),
    ("REAL", "DOUBLE PRECISION"),
)
ADVISORY_LOCK_CLASS = 0x696D67
"""First key of the PostgreSQL advisory locks imgprov takes ("img"); the second is the collection's."""
CONNECT_TIMEOUT_SECONDS = 10


class SqlDatabase:
    """A connection to the catalogue database of one collection, in autocommit mode between
    explicit transactions."""

    def __init__(self, url: str, name: str, *, create: bool = False):
        self.url = url
        self.name = name
        self.dialect = "sqlite" if urlsplit(url).scheme == "sqlite" else "postgresql"
        if self.dialect == "sqlite":
            self._connection = _connect_sqlite(url, create=create)
        else:
            self._connection = _connect_postgres(url, name, create=create)
        self._in_transaction = False

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def close(self) -> None:
        self._connection.close()

    def statement(self, sql: str, *, with_params: bool = True) -> str:
        """`sql` in this database's dialect (placeholders and type names)."""
        if not self.postgres:
            return sql
        for sqlite_type, postgres_type in POSTGRES_TYPES:
            sql = sql.replace(sqlite_type, postgres_type)
        return sql.replace("%", "%%").replace("?", "%s") if with_params else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns a cursor (`fetchone`, `fetchall`, iteration)."""
        if not params:
            return self._run(lambda: self._connection.execute(self.statement(sql, with_params=False)))
        return self._run(lambda: self._connection.execute(self.statement(sql), tuple(params)))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.postgres:
            with self._connection.cursor() as cursor:
                self._run(lambda: cursor.executemany(self.statement(sql), [tuple(row) for row in rows]))
        else:
            self._run(lambda: self._connection.executemany(sql, rows))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlDatabase]:
        """One transaction (serializable against other writers), rolled back on any exception."""
        if self._in_transaction:
            yield self
            return
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            self._connection.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self.execute("COMMIT")

    @contextlib.contextmanager
    def writer_lock(self, wait_seconds: float) -> Iterator[None]:
        """Hold the collection's writer lock (one writer per collection across every machine)."""
        if not self.postgres:
            with WriterLock(Path(_sqlite_path(self.url)).parent, wait_seconds, name=f"{self.name}.lock"):
                yield
            return
        key = zlib.crc32(self.name.encode()) & 0x7FFFFFFF
        deadline = time.monotonic() + wait_seconds
        while not self.execute("SELECT pg_try_advisory_lock(?, ?)", (ADVISORY_LOCK_CLASS, key)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise IndexBusy(
                    f"{self.name}: another imgprov process is writing to this collection; "
                    "try again when it has finished"
                )
            time.sleep(0.2)
        try:
            yield
        finally:
            self.execute("SELECT pg_advisory_unlock(?, ?)", (ADVISORY_LOCK_CLASS, key))

    def _run(self, call):
        try:
            return call()
        except sqlite3.DatabaseError as exc:
            raise IndexStoreError(f"{self.url}: {exc}") from None
        except Exception as exc:
            if _is_psycopg_error(exc):
                raise IndexStoreError(f"{_safe(self.url)}: {_first_line(exc)}") from None
            raise


def _connect_sqlite(url: str, *, create: bool) -> sqlite3.Connection:
    path = Path(_sqlite_path(url))
    if not create and not path.is_file():
        raise IndexStoreError(f"{path}: no imgprov catalogue here (run `imgprov index --db URL PATH...`)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA busy_timeout = 60000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
    except OSError as exc:
        raise IndexUnwritable(f"{path}: cannot create the catalogue ({exc.strerror or exc})") from None
    except sqlite3.DatabaseError as exc:
        raise IndexStoreError(f"{path}: not a readable SQLite catalogue ({exc})") from None
    return connection


def _sqlite_path(url: str) -> str:
    """The file of `sqlite:///FILE` (relative) or `sqlite:////abs/FILE`."""
    path = unquote(urlsplit(url).path)
    if not path.strip("/"):
        raise IndexStoreError(f"{url}: name the SQLite file, as in sqlite:///catalogue.sqlite")
    return path[1:]


def _connect_postgres(url: str, schema: str, *, create: bool):
    try:
        import psycopg
    except ImportError:
        raise IndexStoreError("a PostgreSQL catalogue needs psycopg: pip install 'imgprov[scale]'") from None
    try:
        connection = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        if create:
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.execute(f'SET search_path TO "{schema}"')
    except psycopg.Error as exc:
        raise IndexStoreError(f"{_safe(url)}: cannot connect to PostgreSQL ({_first_line(exc)})") from None
    return connection


def _is_psycopg_error(exc: Exception) -> bool:
    return type(exc).__module__.startswith("psycopg")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
