"""Every command line of imgprov: `imgprov index|search|compare|serve|...` (`app`).

`main` is the `imgprov` entry point. `imgprov compare ...` runs through `imgprov.cli.compare`
alone (a cold compare would otherwise spend most of its time importing search, storage and
indexing); every other command line goes through the full app (`imgprov.cli.app.main`).
"""

import sys


def main() -> None:
    """Entry point of the `imgprov` command."""
    if sys.argv[1:2] == ["compare"]:
        from imgprov.cli.compare import standalone_main

        standalone_main(sys.argv[2:])
    from imgprov.cli.app import main as app_main

    app_main()


__all__ = ["main"]
