"""A checkbox whose state reads without colour: `[x]` when on, `[ ]` when off.

Textual's Checkbox draws `▐X▌` both ways and tells on from off by colour alone; on a monochrome
terminal, in a screen reader's or tmux's capture, or to a colour-blind user the two look the same.
Harlequin and Posting draw the state as a character; so does this one.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class CheckBox(Checkbox):
    """textual.widgets.Checkbox with the state as text: "[x] label" on, "[ ] label" off (3 cells, as
    Checkbox's button). Same value, messages (Checkbox.Changed) and keys (Enter, space) as Checkbox."""

    BUTTON_LEFT = "["
    BUTTON_RIGHT = "]"
    ON, OFF = "x", " "

    @property
    def _button(self) -> Content:
        """The button, reflecting the current value: the mark in the button's style (a colour too where
        there is one), the brackets in the label's colour so they show on every background."""
        mark = self.ON if self.value else self.OFF
        return Content.assemble(self.BUTTON_LEFT, (mark, self.get_visual_style("toggle--button")), self.BUTTON_RIGHT)
