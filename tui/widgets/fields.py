"""Form fields that do not swallow keys they cannot use."""

from __future__ import annotations

import re

from textual import events
from textual.widgets import Input
from textual.widgets._input import _RESTRICT_TYPES


class NumberField(Input):
    """An Input for numbers: a printable key it would reject (r in a reps field) is not eaten but
    left to the screen's bindings, so `r` still runs the suite while the field has focus."""

    def accepts(self, character: str) -> bool:
        value = self.value[: self.cursor_position] + character + self.value[self.cursor_position:]
        if self.max_length and len(value) > self.max_length:
            return False
        if self.restrict and re.fullmatch(self.restrict, value) is None:
            return False
        pattern = _RESTRICT_TYPES.get(self.type) if self.type else None
        return pattern is None or re.fullmatch(pattern, value) is not None

    def check_consume_key(self, key: str, character: str | None) -> bool:
        # Keys it would reject stay with the bindings (the binding chain asks this).
        return super().check_consume_key(key, character) and self.accepts(character)

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and self.selection.is_empty and not self.accepts(event.character):
            # Input's own handler (next in the MRO) would eat it: skip that, and let the event
            # bubble to the screen's and the app's bindings.
            event.prevent_default()
            return
