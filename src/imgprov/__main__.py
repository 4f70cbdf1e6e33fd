"""`python -m imgprov` is the `imgprov` command."""

from imgprov.cli import main

main()
