"""Extraction stage: local features (RootSIFT) and global descriptors (SSCD)."""

from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float, extract_rootsift

__all__ = ["LocalFeatures", "descriptors_as_float", "extract_rootsift"]
