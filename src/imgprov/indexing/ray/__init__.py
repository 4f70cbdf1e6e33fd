"""Distributed extraction and indexing with Ray (`imgprov index --ray`); see docs/scaling.md.

Ray is an optional dependency (`pip install 'imgprov[scale]'`): nothing here imports it until a
cluster is started.
"""

from imgprov.indexing.ray.pipeline import (
    ClusterReport,
    RayConf,
    RayUnavailable,
    index_sources,
    ray_cluster,
)
from imgprov.indexing.ray.sources import ListingError, read_listing, resolve_sources

__all__ = [
    "ClusterReport",
    "ListingError",
    "RayConf",
    "RayUnavailable",
    "index_sources",
    "ray_cluster",
    "read_listing",
    "resolve_sources",
]
