"""Form fields that take keys in the order they arrive, and do not swallow keys they cannot use."""

from __future__ import annotations

import re

from textual import events
from textual.widgets import Input
from textual.widgets._input import _RESTRICT_TYPES


class TextField(Input):
    """An Input that applies its editing keys in the order they were typed.

    Textual 8.2.8 (the newest release) types a printable key in `Input._on_key`, at once, but runs the
    field's own bindings (Left, Home, Backspace, Ctrl+U, Enter, ...) only after the key has bubbled up
    through every ancestor's message queue to `App._check_bindings`: in a burst (tmux send-keys, a
    paste, a fast typist on a laggy link) the letters behind an editing key are typed first. `hello`,
    Left, Left, `X` gave `helloX`. Upstream: Textualize/textual#6605 (open; PR #6631 takes the same
    approach as this class); a minimal reproduction is benchmarks/textual_key_order.py.

    This field runs its own non-priority bindings from its own key handler, in its queue, like the
    letters. What runs is what Textual would run: the focused widget is the first namespace of the
    binding chain, and priority bindings (Esc, Ctrl+Q, Ctrl+X) are checked before a key reaches it.
    A binding whose action is skipped (SkipAction, check_action False) lets the key go on up."""

    def own_binding(self, key: str) -> bool:
        """True when `key` is one of this field's own (non-priority) bindings."""
        return any(not b.priority for b in self._bindings.key_to_bindings.get(key, ()))

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character:
            return  # typed by Input._on_key, next in the MRO
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return
        event.seen_by = self  # the app's type-ahead: this field had its turn at the key


class NumberField(TextField):
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
