"""``python -m netdiag`` runs the command-line interface."""

from netdiag.launcher import main

main()
