"""Every command line of imgprov: `imgprov index|search|compare|serve|...` (`app`)."""

from imgprov.cli.app import main

__all__ = ["main"]
