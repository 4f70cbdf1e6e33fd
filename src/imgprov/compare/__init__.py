"""Compare a query with a candidate original: align (F_A), localize the edits, give the verdict.

`compare_images(query_rgb, original_rgb, compare_preset())` returns a `Comparison`.
"""

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
