"""Extraction stage: local features (`rootsift`), global descriptors (`sscd`), EfficientNet-Lite0
feature maps (`effnet`) and object embeddings (`objects`); `models` loads each model configuration
once per process."""

from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float, extract_rootsift

__all__ = ["LocalFeatures", "descriptors_as_float", "extract_rootsift"]
