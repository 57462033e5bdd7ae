"""Typed values read from what a user typed, shared by the CLI's options (tui.cli.common) and the screens'
fields, so a screen checks a value as the command does without importing the CLI."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number >= 1 from `text`; argparse.ArgumentTypeError (one line) otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value
