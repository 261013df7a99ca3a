"""`python -m consensus` runs the CLI."""

from consensus.cli import main

main()
