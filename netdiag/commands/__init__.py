"""One module per CLI command; ``netdiag.cli`` imports each lazily.

A command module turns parsed options into calls on the stage modules, prints
what the user sees, and returns the exit code. It raises ``NetdiagError`` for
problems; it never calls ``sys.exit`` itself.
"""
