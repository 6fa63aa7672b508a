"""Errors that are the user's to fix: the CLI prints them as one line `reconent: error: ...` and exits 2.

Anything else that escapes a command is a bug or an environment failure: the CLI lets its traceback
show (exit 1). Raise `UserError` (or a subclass) only for input the user can correct, naming the
field or flag and the fix."""
from __future__ import annotations


class UserError(ValueError):
    """Bad input (a flag, a spec field, a missing dataset, a refused cluster): one line, exit 2."""
