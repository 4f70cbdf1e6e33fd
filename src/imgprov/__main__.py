"""`python -m imgprov` is the `imgprov` command."""

from imgprov.cli.app import main

main()
