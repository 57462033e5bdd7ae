"""The command palette's own provider: every screen and action by name, whatever has focus.

Textual's system commands only list the bindings active for the focused widget, so with the prompt
focused the palette found no "Suite" or "History". This provider always lists the app's commands
(APP_COMMANDS) plus the current screen's own keys."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, app action). The key shown beside each title comes from the app's bindings.
APP_COMMANDS: list[tuple[str, str, str]] = [
    ("Live", "the prompt, the streamed answer and the gauges", "show_live"),
    ("Suite", "run the article's suite at batch 1", "show_suite"),
    ("History", "every stored run", "show_history"),
    ("Prices", "GPU prices per provider", "prices"),
    ("Load", "throughput under load: concurrency or request rate", "load"),
    ("Compare", "your runs by GPU x provider, cost at an SLO, the frontier", "compare"),
    ("Run suite", "open Suite and run it", "run_suite"),
    ("Start load", "open Load and start it with the form's settings", "start_load"),
    ("Stop", "stop the running generation, suite or load (finished requests are kept)", "stop_run"),
    ("Help", "every key of the current screen", "help"),
    ("Toggle theme", "light or dark", "toggle_theme"),
    ("Quit", "stop what runs, store it, shut the engine down", "quit_app"),
]


class TokentopCommands(Provider):
    def _commands(self):
        commands = getattr(self.app, "palette_commands", None)
        return commands(self.screen) if commands is not None else []

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
