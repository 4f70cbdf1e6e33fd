"""The fields of a multipart form that the upload routes read themselves (after the token check and
the queue admission), with a clear 400 for a missing or mistyped field."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile

from imgprov.service.errors import BadRequest


def form_file(form: FormData, name: str, *, required: bool = True) -> UploadFile | None:
    """The file sent in form field `name`; `BadRequest` when it is missing (and required) or is a
    plain field, as a browser sends a file input left empty (no file name)."""
    value = form.get(name)
    if value is None:
        if required:
            raise BadRequest(f"the form field `{name}` (an image file) is missing")
        return None
    if not isinstance(value, UploadFile):
        raise BadRequest(f"the form field `{name}` must be a file upload with a file name, not a text field")
    return value


def form_id(form: FormData, name: str) -> int | None:
    """The positive integer sent in form field `name`, None when absent; `BadRequest` otherwise."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"the form field `{name}` must be a positive integer")
    return int(value)


TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


def form_flag(form: FormData, name: str) -> bool:
    """The boolean sent in form field `name` (true/false, 1/0, yes/no, on/off), False when absent;
    `BadRequest` otherwise."""
    value = form.get(name)
    if value is None:
        return False
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise BadRequest(f"the form field `{name}` must be true or false")
    return word in TRUE_WORDS


def form_text(form: FormData, name: str) -> str | None:
    """The short text sent in form field `name`, None when absent; `BadRequest` when it is a file."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"the form field `{name}` must be a text field, not a file")
    return value.strip()
