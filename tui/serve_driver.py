"""Textual's web driver, for the one app process that `tokentop serve` shares between browsers.

Textual paints only what changed, so a browser that joins a running app would see a blank page
until the next change. The server sends a `repaint` meta packet when a browser joins; this driver
answers it by setting the terminal modes again (alternate screen, mouse, bracketed paste, hidden
cursor) and repainting the whole screen, and shows who is watching.
"""

from __future__ import annotations

import asyncio

from textual.drivers.web_driver import WebDriver


class SharedWebDriver(WebDriver):
    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        super().start_application_mode()

    def on_meta(self, packet_type: str, payload: dict[str, object]) -> None:
        # Called on Textual's input thread; the app is touched only on its own loop.
        if packet_type == "repaint":
            self._loop.call_soon_threadsafe(self._repaint, payload.get("viewers"))
        else:
            super().on_meta(packet_type, payload)

    def _repaint(self, viewers: object) -> None:
        self.write("\x1b[?1049h")  # alternate screen (also clears it in the browsers already watching)
        self._enable_mouse_support()
        self.write("\x1b[?25l")  # hide the cursor
        self._enable_bracketed_paste()
        self._app.refresh(repaint=True, layout=True)
        if isinstance(viewers, int) and viewers > 1:
            self._app.notify(
                f"{viewers} browsers share this app: same screen, same keyboard, one engine.",
                title="Another browser joined",
            )
