"""Options several commands share: where the collection is (`--db`) and whose C2PA signers to trust."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprov.storage.embedded.catalogue import default_db_dir

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help="Index directory, or milvus://HOST:PORT/NAME?sql=postgresql://USER@HOST:PORT/DB (or sqlite:///FILE).",
        default_factory=lambda: str(default_db_dir()),
        show_default="~/.local/share/imgprov",
    ),
]
TrustOption = Annotated[
    Path | None,
    typer.Option("--trust-anchors", help="PEM file of C2PA trust anchors: signers they certify are trusted."),
]
