"""Compare a query with a candidate original: align (F_A), localize the edits, give the verdict.

`compare_images(query_rgb, original_rgb, compare_preset())` returns a `Comparison`. The package is
also the public verb: `imgprov.compare(query, original)` takes paths or pixels (`imgprov.api.compare`).
"""

import sys
import types

from imgprov.compare.comparison import Comparison, compare_images
from imgprov.compare.conf import COMPARES, DEFAULT_COMPARE, CompareConf, compare_preset
from imgprov.compare.regions import ChangedRegion

__all__ = [
    "COMPARES",
    "DEFAULT_COMPARE",
    "ChangedRegion",
    "CompareConf",
    "Comparison",
    "compare_images",
    "compare_preset",
]


class _CallablePackage(types.ModuleType):
    """This package's type: calling it compares, so that `imgprov.compare` is both package and verb."""

    def __call__(self, query, original, *, conf=None) -> Comparison:
        from imgprov.api import compare

        return compare(query, original, conf=conf)


sys.modules[__name__].__class__ = _CallablePackage
