"""Cutting a sequence into batches: SQL `IN (...)` lists, Milvus requests, index and copy batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

Items = TypeVar("Items", bound=Sequence)


def batched(items: Items, size: int) -> Iterator[Items]:
    """Consecutive slices of `items` (a list, a NumPy array...) of `size` items, the last shorter."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
