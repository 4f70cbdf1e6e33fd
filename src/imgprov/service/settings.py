"""Configuration of one server process (`ServiceSettings`), checked when it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgprov import presets
from imgprov.compare import DEFAULT_COMPARE
from imgprov.errors import ImgprovError
from imgprov.extract.sscd import available_cores

TOKEN_ENV = "IMGPROV_TOKEN"
OPEN_SEARCH_ENV = "IMGPROV_OPEN_SEARCH"
MIN_TOKEN_LENGTH = 16
MULTIPART_OVERHEAD_BYTES = 1 << 20
"""Room for multipart boundaries, headers and small form fields around the uploaded files."""


class SettingsError(ImgprovError):
    """The server cannot start with these settings."""


@dataclass(frozen=True)
class ServiceSettings:
    """What one server process serves and how.

    db: the index directory or a distributed store's URL (`imgprov.storage.location`).
    token: the bearer token that changing the collection needs (and searching, unless open_search);
    None disables every change. max_upload_bytes: largest uploaded file; max_pixels: largest decoded
    image (decompression-bomb guard). workers: threads running searches, comparisons and indexing
    (by default one per core this process may run on); queue_size: jobs that may wait for a worker before
    requests get 503. request_timeout: seconds a
    request waits for its job before a 504. job_cpu_seconds: CPU time a search or comparison may use
    on its worker thread before it is stopped, at its next step, with a 504. upload_timeout: seconds
    a client may take to send its whole request body before a 408.
    trust_anchors: PEM file of C2PA trust anchors, as `imgprov search --trust-anchors` takes.
    create: create an empty index at `db` when there is none.
    query_cache_entries, query_cache_bytes, query_ttl: how many searched uploads the server keeps
    for `query_token`s, in how many bytes, for how many seconds after their last use.
    comparison_cache_entries, comparison_cache_bytes: how many comparisons with indexed originals
    (JSON and pictures) it keeps to answer the same comparison again, in how many bytes.
    """

    db: Path | str
    token: str | None = field(default=None, repr=False)
    open_search: bool = True
    max_upload_bytes: int = 25 << 20
    max_pixels: int = 50_000_000
    workers: int = field(default_factory=available_cores)
    queue_size: int = 8
    request_timeout: float = 120.0
    job_cpu_seconds: float = 5.0
    upload_timeout: float = 60.0
    top_k: int = 10
    search_preset: str = presets.DEFAULT_SEARCH
    compare_preset: str = DEFAULT_COMPARE
    trust_anchors: Path | None = None
    create: bool = False
    query_cache_entries: int = 64
    query_cache_bytes: int = 128 << 20
    query_ttl: float = 600.0
    comparison_cache_entries: int = 256
    comparison_cache_bytes: int = 128 << 20

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise SettingsError(f"the token must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.token is not None and any(character.isspace() for character in self.token):
            raise SettingsError("the token must not contain spaces (a client could never send it)")
        if not self.open_search and self.token is None:
            raise SettingsError(f"searching is token-protected but no token is set (--token or ${TOKEN_ENV})")
        for name in ("max_upload_bytes", "max_pixels", "workers", "top_k"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.queue_size < 0:
            raise SettingsError(f"queue_size must be 0 or more, not {self.queue_size}")
        for name in ("query_cache_entries", "query_cache_bytes", "comparison_cache_entries"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more, not {getattr(self, name)}")
        for name in ("request_timeout", "upload_timeout", "job_cpu_seconds", "query_ttl"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, not {getattr(self, name)}")

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: two files (a comparison) and the multipart framing around them."""
        return 2 * self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def writable(self) -> bool:
        """Whether clients may change the collection at all (only with a token)."""
        return self.token is not None
