"""Minimal reproduction, ready to send upstream: Textual's Input applies a burst of keys out of order.

Reported upstream as Textualize/textual#6605 (open; PR #6631 proposes running a widget's own bindings
inline in `_on_key`, as tokentop's `tui.widgets.fields.TextField` does). Seen with Textual 8.2.8, the
newest release on PyPI when this was written.

Run:  python benchmarks/textual_key_order.py          -> plain Input: 'helloX' (expected 'helXlo')
      python benchmarks/textual_key_order.py --fixed  -> the workaround:  'helXlo'

What happens: the driver queues every key read in one go on the App. `App.on_event` forwards each to
the focused Input (`Widget._forward_event` -> `post_message`). A printable key is typed by
`Input._on_key` at once. A key the Input binds (left, home, backspace, ctrl+u, enter) is not handled
there: it bubbles, one `post_message` per ancestor (Input -> container -> Screen -> App), and only
`App._on_key` -> `App._check_bindings` runs `Input.action_cursor_left`. By then the Input has
already typed the letters queued behind it. In a real terminal the same happens for tmux send-keys,
a paste of keystrokes, a fast typist on a laggy SSH link; bash's readline reads `helXlo`.
"""

from __future__ import annotations

import asyncio
import sys

from textual import events
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input


class InlineBindingsInput(Input):
    """The workaround: run the Input's own non-priority bindings from its own key handler."""

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable:
            return  # Input._on_key types it
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return


class OneInput(App):
    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.field_class = InlineBindingsInput if fixed else Input

    def compose(self) -> ComposeResult:
        with Horizontal():  # one container: one more hop for the bubbling key (any layout has some)
            yield self.field_class(id="field")


async def main(fixed: bool) -> str:
    app = OneInput(fixed)
    async with app.run_test() as pilot:
        # One burst, queued the way the driver queues keys it read together.
        for key, character in [*((c, c) for c in "hello"), ("left", None), ("left", None), ("X", "X")]:
            app._driver.send_message(events.Key(key, character))
        for _ in range(10):
            await pilot.pause()
        return app.query_one(Input).value


if __name__ == "__main__":
    value = asyncio.run(main("--fixed" in sys.argv))
    print(repr(value), "(expected 'helXlo')")
    sys.exit(0 if value == "helXlo" else 1)
