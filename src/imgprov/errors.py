"""Typed errors. The CLI and the server turn every one of them into a one-line message."""


class ImgprovError(Exception):
    """Base class of every error imgprov reports to a user."""


class ImageError(ImgprovError):
    """An input image could not be used."""


class ImageNotFound(ImageError):
    """The path does not exist or is not a regular file."""


class EmptyImage(ImageError):
    """The file has zero bytes."""


class NotAnImage(ImageError):
    """The bytes are not in any supported image format."""


class TruncatedImage(ImageError):
    """The file is an image whose data ends early or is corrupt."""


class ImageTooLarge(ImageError):
    """The image has more pixels or bytes than the configured limit (decompression-bomb guard)."""


class PresetError(ImgprovError, ValueError):
    """An unknown preset name or an invalid preset parameter."""


class IndexStoreError(ImgprovError):
    """The index directory cannot be opened, read or written."""


class IndexUnwritable(IndexStoreError):
    """The index directory cannot be created or written."""


class IndexCorrupt(IndexStoreError):
    """The index files disagree with each other or cannot be parsed."""


class IndexBusy(IndexStoreError):
    """Another process holds the writer lock of the index."""


class ModelMissing(ImgprovError):
    """A model file that ships in an optional package is not installed."""
