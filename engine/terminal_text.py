"""Outside text made safe for a terminal: the one place that strips control characters.

Text that came from outside tokentop — model output, server and price-API replies, stored or imported
runs (hostnames, models, labels, errors, providers, GPU names...), remote manifests — can carry
escape sequences that a terminal obeys: clear the screen (CSI 2J), set the window title (OSC 0),
write the clipboard (OSC 52), reset the terminal (ESC c). `safe_text` removes them before any
terminal sees the text; `safe_display` does the same through a row, a list of rows or a dataclass
(the display-row helper screens and commands apply where they read data to show); `StreamSanitizer`
is `safe_text` for a stream that arrives in pieces; `one_line` is the one formatter that makes a failure
(or any outside text) one safe line.

What is removed (ECMA-48 / ISO 6429): whole escape sequences — CSI (ESC [ or U+009B) with its
parameters, OSC, DCS, SOS, PM and APC strings (ESC ] / P / X / ^ / _ or U+009D / 0090 / 0098 /
009E / 009F) up to their terminator (BEL or ST), and two-character escapes (ESC c, ESC 7, ESC ( B);
then every remaining C0 control except newline and tab (CR too: it would overwrite the line), DEL
and every C1 control (U+0080-U+009F), and the bidirectional
override, embedding and isolate characters (U+202A-U+202E, U+2066-U+2069). A sequence cut off at the end
loses its introducer, so what is left prints as plain characters.

JSON output keeps the text exact (json escapes control characters itself): call these only on the
way to a terminal. Markup is not touched here: render the result as plain text (rich.text.Text,
markup=False), never as Rich or Textual markup.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

# Every sequence starts with one of these, so text without any is returned as it is (the usual case).
# Bidirectional embeddings/overrides/isolates (U+202A-202E, U+2066-2069) are stripped too: they do not
# drive the terminal, but they reorder what it shows (a hostname that reads as another: "Trojan Source").
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SEQUENCE = re.compile(
    r"""
    (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]                          # CSI ... final byte
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c)  # OSC/DCS/SOS/PM/APC ... BEL or ST
  | \x1b [ -/]* [0-~]                                            # ESC c, ESC 7, ESC ( B ...
    """,
    re.VERBOSE | re.DOTALL,
)
# The start of a sequence not finished yet (a stream may split one between two pieces).
_INCOMPLETE_TAIL = re.compile(
    r"(?:\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b\x9c]*|[ -/]*)?"
    r"|\x9b[0-?]*[ -/]*|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*)$"
)


def safe_text(text: str, *, tab: str | None = None) -> str:
    """`text` without escape sequences and control characters (newlines and tabs kept; CRLF becomes
    a newline; with `tab`, tabs become that string). The one function tokentop applies to outside
    text before a terminal sees it; see the module docstring for what is removed."""
    if not text or not isinstance(text, str):
        return text
    if tab is not None and "\t" in text:
        text = text.replace("\t", tab)
    if _CONTROL.search(text) is None:
        return text
    text = _SEQUENCE.sub("", text.replace("\r\n", "\n"))
    return _CONTROL.sub("", text)


def safe_display(value: Any) -> Any:
    """`value` with safe_text applied to every string in it: dict keys and values, list, tuple and
    set items, and the fields of dataclass instances (a shallow copy each; the original is left as it
    is, for JSON). Other values (numbers, datetimes...) come back unchanged. Apply it where rows are
    read for display, so every field of them is covered, not one at a time."""
    if isinstance(value, str):
        cleaned = safe_text(value)
        return value if cleaned == value else cleaned  # a str Enum member stays itself when clean
    if isinstance(value, dict):
        return {safe_display(k): safe_display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_display(v) for v in value]
    if isinstance(value, tuple):
        items = [safe_display(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, (set, frozenset)):
        return type(value)(safe_display(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        clone = copy.copy(value)
        for f in dataclasses.fields(value):
            object.__setattr__(clone, f.name, safe_display(getattr(value, f.name)))
        return clone
    return value



def one_line(what: object, limit: int | None = None, *, typed: bool = False, join: bool = False,
             ellipsis: bool = False) -> str:
    """`what` (an exception, or any text) as one line for a terminal, a notice or a stored error: the
    first line that is not blank, stripped (with `join`, every line, each run of whitespace one space),
    through `safe_text` first, so no escape sequence or control character survives; cut at `limit`
    characters (with `ellipsis`, the last one kept is a "…"). An exception is ``str(exc)``, its type's
    name when that is empty, and with `typed` its type's name in front ("ValueError: bad reply") as
    Python prints it. The one formatter for failures (issue 22): every "first line of the exception"
    in tokentop is this function."""
    text = safe_text(what if isinstance(what, str) else "" if what is None else str(what))
    if join:
        line = " ".join(text.split())
    else:
        line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    if isinstance(what, BaseException):
        name = type(what).__name__
        line = (f"{name}: {line}" if typed else line) if line else name
    if limit is not None and len(line) > limit:
        line = line[: limit - 1] + "…" if ellipsis else line[:limit]
    return line

class StreamSanitizer:
    """`safe_text` for a stream (model output arriving in pieces): an escape sequence split across
    pieces is held back until it completes (at most `max_hold` characters), so no half of it leaks
    onto the screen. Tabs become `tab`."""

    def __init__(self, max_hold: int = 64, tab: str = "    "):
        self._hold = ""
        self.max_hold = max_hold
        self.tab = tab

    def feed(self, text: str) -> str:
        text = self._hold + text
        self._hold = ""
        m = _INCOMPLETE_TAIL.search(text)
        if m and m.start() < len(text) and len(text) - m.start() <= self.max_hold:
            self._hold = text[m.start():]
            text = text[: m.start()]
        return safe_text(text, tab=self.tab)

    def flush(self) -> str:
        text, self._hold = self._hold, ""
        return safe_text(text, tab=self.tab)
