"""Where distributed indexing reads images: local files, a listing of paths and URLs, and fetching.

A source is a string: an absolute local path (resolved, the same identity `imgprov index` gives a
file), or an http(s):// or s3:// URL, which is also the path the catalogue records. A listing file
(`--list`) holds one entry per line: a local path (relative to the listing's folder), a file:// URL,
an http(s):// URL or an s3://bucket/key URL, as an object-storage listing names them; blank lines
and lines starting with # are ignored.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import importlib.util
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imgprov.errors import ImageNotFound, ImageTooLarge, ImgprovError
from imgprov.images import DEFAULT_MAX_BYTES, read_image_bytes
from imgprov.indexing.pipeline import URL_SCHEMES, discover_images

REMOTE_SCHEMES = URL_SCHEMES
HTTP_TIMEOUT_SECONDS = 30.0
S3_PACKAGE = "boto3"


class ListingError(ImgprovError):
    """A listing file that cannot be read, or that names sources this installation cannot fetch."""


@dataclass(frozen=True)
class Fetched:
    """The bytes of one source and its modification time (seconds since the epoch, 0 if unknown)."""

    data: bytes
    mtime: float


def resolve_sources(
    paths: Iterable[Path], listing: Path | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """The sources named by paths (folders searched recursively) and by a listing file.

    Returns the sources in a stable order without repeats, and (entry, reason) for each entry skipped.
    Raises `ListingError` when the listing cannot be read, or names s3:// URLs without boto3.
    """
    local, skipped = discover_images(list(paths))
    remote: list[str] = []
    if listing is not None:
        entries, bad = read_listing(listing)
        skipped += bad
        listed_files, listed_skipped = discover_images(
            [Path(entry) for entry in entries if not _is_remote(entry)]
        )
        local += listed_files
        skipped += listed_skipped
        remote = [entry for entry in entries if _is_remote(entry)]
    if any(entry.startswith("s3://") for entry in remote) and importlib.util.find_spec(S3_PACKAGE) is None:
        raise ListingError(f"s3:// sources need {S3_PACKAGE}: pip install 'imgprov[s3]' (or {S3_PACKAGE})")
    sources = dict.fromkeys([str(path) for path in local] + remote)
    return list(sources), skipped


def read_listing(listing: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Entries of a listing file: local paths made absolute (file:// URLs decoded), remote URLs kept.

    Returns the entries and (entry, reason) for each line that names no source imgprov can read.
    """
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ListingError(f"{listing}: cannot read the listing ({reason})") from None
    entries: list[str] = []
    skipped: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        entry, reason = _listing_entry(text, listing.parent)
        if entry is None:
            skipped.append((text, f"{listing}:{number}: {text}: {reason}"))
        else:
            entries.append(entry)
    return entries, skipped


def fetch(
    source: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = HTTP_TIMEOUT_SECONDS
) -> Fetched:
    """Read a source's bytes, at most `max_bytes`; raise an `ImageError` naming the source on failure."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        return _fetch_http(source, max_bytes, timeout)
    if scheme == "s3":
        return _fetch_s3(source, max_bytes, timeout)
    path = Path(source)
    try:
        data = read_image_bytes(path, max_bytes)
        return Fetched(data, path.stat().st_mtime)
    except OSError as exc:
        raise ImageNotFound(f"{source}: cannot read ({exc.strerror or exc})") from None


def _listing_entry(text: str, base: Path) -> tuple[str | None, str]:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return None, f"a file:// URL of another host ({parts.netloc})"
        return urllib.parse.unquote(parts.path), ""
    if parts.scheme in REMOTE_SCHEMES:
        if not parts.netloc or (parts.scheme == "s3" and not parts.path.strip("/")):
            return None, "a URL without a host or key"
        return text, ""
    if len(parts.scheme) > 1:
        return None, f"unsupported scheme {parts.scheme!r} (use a path, file://, http(s):// or s3://)"
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path), ""


def _is_remote(entry: str) -> bool:
    return urllib.parse.urlsplit(entry).scheme in REMOTE_SCHEMES


def _fetch_http(url: str, max_bytes: int, timeout: float) -> Fetched:
    request = urllib.request.Request(url, headers={"User-Agent": "imgprov"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ImageTooLarge(f"{url}: {int(declared)} bytes, more than the limit of {max_bytes}")
            data = response.read(max_bytes + 1)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        raise ImageNotFound(f"{url}: cannot fetch (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ImageNotFound(f"{url}: cannot fetch ({reason})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{url}: more than the limit of {max_bytes} bytes")
    return Fetched(data, _http_time(modified))


def _http_time(header: str | None) -> float:
    if not header:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _fetch_s3(url: str, max_bytes: int, timeout: float) -> Fetched:
    """Get an object with boto3's standard configuration (credentials, region and `AWS_ENDPOINT_URL`
    from the environment or ~/.aws), refusing one larger than `max_bytes` before reading it."""
    import botocore.exceptions

    parts = urllib.parse.urlsplit(url)
    key = urllib.parse.unquote(parts.path.lstrip("/"))
    try:
        response = _s3_client(timeout).get_object(Bucket=parts.netloc, Key=key)
        with contextlib.closing(response["Body"]) as body:
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                raise ImageTooLarge(f"{url}: {size} bytes, more than the limit of {max_bytes}")
            data = body.read(max_bytes + 1)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        reason = f"{error.get('Code', 'error')}: {error.get('Message') or exc}"
        raise ImageNotFound(f"{url}: cannot fetch ({reason})") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ImageNotFound(f"{url}: cannot fetch ({exc})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{url}: more than the limit of {max_bytes} bytes")
    modified = response.get("LastModified")
    return Fetched(data, modified.timestamp() if modified is not None else 0.0)


@functools.cache
def _s3_client(timeout: float):
    """One S3 client per process and timeout (boto3 clients are thread-safe; making one takes tens
    of milliseconds, which would otherwise be paid per object)."""
    import boto3
    import botocore.config

    config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout)
    return boto3.session.Session().client("s3", config=config)
