"""The `reconent` command line, on top of every other layer: nothing in reconent imports it.

Other tools script it: keep flag and JSON key names stable. Each command group is one module
here (`COMMANDS`, in help order) with `register(sub)`, which adds its argparse sub-commands;
each command is a `cmd_*` function. Bad input raises `UsageError` or another `reconent.errors.UserError`
(one line, exit 2); any other exception is a bug or a failing environment and shows its traceback (exit 1).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from reconent.errors import UserError

# The command modules, in the order `reconent --help` lists them; each has `register(sub)`.
COMMANDS = ("probe", "bench", "report", "sweep", "compact", "explain")
# Commands that hold nothing but memory when they return (no Ray, no open files, no threads): the
# `reconent` script ends them with os._exit and skips the interpreter's teardown of torch (~0.7 s).
QUICK_EXIT = ("probe", "theory")


class UsageError(UserError):
    """Bad user input: printed as one line `reconent: error: ...`, exit code 2."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix (one line, exit 2): `UserError`, and those that layers
    below declare on their own (each a ValueError or FileNotFoundError with a one-line message)."""
    from reconent.analysis.frames import AnalysisError
    from reconent.science.data import DatasetNotFound
    from reconent.sweep.lease import LeaseHeld
    from reconent.sweep.results import NoResults

    return UserError, DatasetNotFound, NoResults, LeaseHeld, AnalysisError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage plus the error; we want one line
        raise UsageError(message)


def number(kind, lo=None, strict=False):
    """An argparse type: `kind` (int, float) at least `lo` (above `lo` when `strict`)."""
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if lo is not None and (v <= lo if strict else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {lo}, got {s}")
        return v
    parse.__name__ = kind.__name__
    return parse


pos_int = number(int, 1)
nonneg = number(float, 0.0)
pos_float = number(float, 0.0, strict=True)


def emit(obj: dict, as_json: bool, table) -> None:
    """One JSON object with --json, else the human-readable `table(obj)`."""
    if as_json:
        print(json.dumps(obj))
    else:
        table(obj)


def parser() -> Parser:
    p = Parser(prog="reconent", description="Predict which initialisations and depths of a network will train, "
               "with the cascade reconstruction-entropy probe (arXiv:2406.12916).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        args.func(args)
    except Exception as e:  # noqa: BLE001 -- only the user's errors are caught; the rest is re-raised
        if not isinstance(e, user_errors()):
            raise  # a bug or a failing environment: its traceback, exit 1
        print(f"reconent: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


def console() -> None:
    """The `reconent` script: `main()`, then exit (quickly for `QUICK_EXIT` commands, once output is flushed)."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
