"""imgprov: find the originals of an image, verify them and localize what was changed."""

__version__ = "0.1.0"
