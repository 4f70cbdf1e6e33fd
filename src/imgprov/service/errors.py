"""Errors of the service, and the HTTP status every imgprov error becomes."""

from __future__ import annotations

from imgprov.errors import (
    EmptyImage,
    ImageError,
    ImageNotFound,
    ImageTooLarge,
    ImgprovError,
    IndexBusy,
    NotAnImage,
    PresetError,
    TruncatedImage,
)


class ServiceBusy(ImgprovError):
    """Every worker is busy and the queue is full."""


class ServiceTimeout(ImgprovError):
    """A job did not finish within the request timeout."""


class JobOverBudget(ServiceTimeout):
    """A job used more CPU time than a request may."""


class JobCancelled(ImgprovError):
    """A job was stopped because its client went away or its request timed out."""


class ClientGone(ImgprovError):
    """The client closed the connection before its job finished; nobody reads the answer."""


class BlankImage(ImgprovError):
    """An uploaded image is blank or flat: there is nothing in it to compare."""


class UnknownImage(ImgprovError):
    """No image in the collection has this id."""


class UnknownQuery(ImgprovError):
    """No upload this server keeps has this `query_token` (never issued, expired or evicted)."""


class OriginalUnavailable(ImgprovError):
    """An indexed original's file can no longer be read on the server."""


class BadRequest(ImgprovError):
    """The request is well-formed HTTP but asks for something invalid."""


STATUS_BY_ERROR: tuple[tuple[type[ImgprovError], int], ...] = (
    (ImageTooLarge, 413),
    (EmptyImage, 400),
    (NotAnImage, 415),
    (TruncatedImage, 400),
    (ImageNotFound, 404),
    (ImageError, 400),
    (UnknownImage, 404),
    (UnknownQuery, 404),
    (OriginalUnavailable, 409),
    (BadRequest, 400),
    (PresetError, 400),
    (ServiceBusy, 503),
    (IndexBusy, 503),
    (ServiceTimeout, 504),
    (BlankImage, 422),
    (ClientGone, 499),
)


def status_of(error: ImgprovError) -> int:
    """The HTTP status of an imgprov error; 500 for errors that are the server's own fault."""
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def client_message(error: ImgprovError) -> str:
    """What a client is told of an error: its message, unless that names the server's own files."""
    if isinstance(error, IndexBusy):
        return "the collection is being changed by another process; try again in a few seconds"
    return str(error)
