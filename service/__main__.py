"""`python -m service` runs the full consensus CLI (with serve and keys)."""

from service.cli import main

main()
