"""How every `imgprov` command line ends: each error becomes one line on stderr and an exit status."""

from __future__ import annotations

import os
import sys

import typer

from imgprov.errors import ImgprovError


def run(app: typer.Typer, arguments: list[str] | None = None, *, interrupted: str = "interrupted") -> None:
    """Run the typer `app` on `arguments` (None: the process's) and exit: 0 on success, 1 on an
    imgprov error, 2 on wrong arguments, 130 when aborted or interrupted (`interrupted` says what
    is kept), 1 with a one-line message on any other error (IMGPROV_DEBUG=1: its traceback)."""
    try:
        status = app(arguments, prog_name="imgprov", standalone_mode=False)
    except ImgprovError as exc:
        fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        fail("aborted", status=130)
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        fail(f"{message} (see `imgprov --help`)", status=2)
    except KeyboardInterrupt:
        fail(interrupted, status=130)
    except Exception as exc:
        if os.environ.get("IMGPROV_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set IMGPROV_DEBUG=1 for details)")
    sys.exit(status if isinstance(status, int) else 0)


def fail(message: str, status: int = 1) -> None:
    """One line on stderr, then exit with `status`."""
    print(f"imgprov: error: {message}", file=sys.stderr)
    sys.exit(status)
