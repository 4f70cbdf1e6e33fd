"""`python -m imgprov.service --db DIR`: the `imgprov serve` command on its own."""

from __future__ import annotations

import sys

import typer

from imgprov.cli.serve import serve_command
from imgprov.errors import ImgprovError


def main() -> None:
    """Run `serve`; an imgprov error is one line on stderr and exit status 1."""
    try:
        typer.run(serve_command)
    except ImgprovError as exc:
        print(f"imgprov: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
