"""`python -m studio` runs the `studio` command."""

from studio.cli import main

main()
