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


def type_into(screen, event: events.Key, field: Input | None) -> bool:
    """On a screen whose purpose is typing (Live's prompt, Compare's SLO tab), a printable key that no
    field took goes into the screen's field — focused, the character typed — instead of firing a
    single-letter shortcut (t theme, p Prices, q quit, ...). Keys the screen binds itself (Live's `/`,
    Compare's tab letters after Esc) keep their meaning; the F-keys, Esc and Ctrl keys are untouched.
    Call it from the screen's on_key; True when the key was taken."""
    if field is None or not event.is_printable or not event.character or field.disabled:
        return False
    if isinstance(screen.focused, Input):  # a field has focus: it had its chance at the key already
        return False
    own = {key.strip() for binding in getattr(type(screen), "BINDINGS", [])
           for key in getattr(binding, "key", "").split(",")}
    if event.key in own:
        return False
    event.stop()
    event.prevent_default()
    # Focusing selects the field's text (Input's select_on_focus), and the next key would replace what was
    # just typed: not for this focus (restored once the field has handled it).
    keep = field.select_on_focus
    field.select_on_focus = False
    screen.set_focus(field)  # now (field.focus() would wait a turn): its Focus event is queued before the restore
    field.call_later(setattr, field, "select_on_focus", keep)
    field.cursor_position = len(field.value)
    field.insert_text_at_cursor(event.character)
    return True
