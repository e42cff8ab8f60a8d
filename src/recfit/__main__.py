"""``python -m recfit`` runs the command line."""

from recfit.cli import main

main()
