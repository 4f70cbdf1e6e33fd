"""The folder where `imgprov serve` keeps the originals clients upload, and the files in it that no
image record points to.

Uploads are stored as `DIR/originals/<sha256>.<suffix>` inside an index directory (for a distributed
store, in `~/.local/share/imgprov/originals/<NAME>` on the server's machine). A server killed between
storing an upload and committing its record leaves the file behind, with no record pointing to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imgprov.storage.embedded.catalogue import default_db_dir
from imgprov.storage.location import parse_location

if TYPE_CHECKING:
    from imgprov.storage.protocol import ImageCatalogue

ORIGINALS_FOLDER = "originals"


def originals_folder(db: Path | str) -> Path:
    """The folder uploaded originals of the collection `db` names are kept in."""
    location = parse_location(db)
    if location.path is not None:
        return (location.path / ORIGINALS_FOLDER).resolve()
    return (default_db_dir() / ORIGINALS_FOLDER / location.name).resolve()


def orphaned_originals(db: Path | str, catalogue: ImageCatalogue) -> list[Path]:
    """Files in the originals folder that no image record points to (and the `.part` file of a write
    that was interrupted), sorted. Nothing refers to them; `imgprov check --repair` deletes them."""
    folder = originals_folder(db)
    if not folder.is_dir():
        return []
    recorded = {Path(record.path).resolve() for record in catalogue.images_under(str(folder))}
    return sorted(path for path in folder.iterdir() if path.is_file() and path.resolve() not in recorded)
