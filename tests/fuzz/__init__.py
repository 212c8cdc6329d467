"""A seeded fuzzer for the ``netdef`` command line.

Every case feeds a mutated real file (or flag list) to a real subcommand and demands
one of two endings: success, or exactly one ``netdef: error:`` line with exit 1 or 2 --
never a traceback, a signal death or a hang.  ``python -m tests.fuzz`` runs it.
"""
