"""One way to load a model: each configuration is loaded once per process and shared by its callers.

A model is cached under its frozen conf dataclass and ONNX thread count, so every caller asking for
the same configuration gets the same extractor. ONNX Runtime sessions may `run` from several threads
at once; the lock only makes threads that ask for a model at the same time load it once.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from imgprov.extract.sscd import GlobalConf, SSCDExtractor

if TYPE_CHECKING:
    from imgprov.extract.effnet import EffNetFeatures, FeatureMapConf

_LOADING = threading.Lock()


def sscd_extractor(conf: GlobalConf, intra_op_threads: int | None = None) -> SSCDExtractor:
    """The process's SSCD extractor of `conf` (intra_op_threads None: the conf's, else every core)."""
    with _LOADING:
        return _sscd(conf, intra_op_threads)


def effnet_features(conf: FeatureMapConf, intra_op_threads: int | None = None) -> EffNetFeatures:
    """The process's EfficientNet-Lite0 extractor of `conf` (built, or loaded from its disk cache)."""
    with _LOADING:
        return _effnet(conf, intra_op_threads)


@functools.cache
def _sscd(conf: GlobalConf, intra_op_threads: int | None) -> SSCDExtractor:
    return SSCDExtractor(conf, intra_op_threads=intra_op_threads)


@functools.cache
def _effnet(conf: FeatureMapConf, intra_op_threads: int | None) -> EffNetFeatures:
    from imgprov.extract.effnet import EffNetFeatures  # its ONNX graph builder is slow to import

    return EffNetFeatures(conf, intra_op_threads=intra_op_threads)
