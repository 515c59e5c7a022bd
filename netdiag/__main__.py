"""``python -m netdiag`` runs the command-line interface."""

from netdiag.cli import main

main()
