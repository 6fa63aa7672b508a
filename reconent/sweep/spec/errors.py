"""`SpecError`: the one error of a bad sweep spec (schema, loader and expansion raise it)."""
from __future__ import annotations

from reconent.errors import UserError


class SpecError(UserError):
    """A bad sweep spec. `str(e)` is one line: `<field path>: <what is wrong and what is allowed>`."""

    def __init__(self, msg: str, field: str = "", file: str = ""):
        self.field, self.msg, self.file = field, msg, file
        super().__init__(": ".join(x for x in (file, field, msg) if x))
