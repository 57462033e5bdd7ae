"""One handler for the failures of a screen's workers (issue 22): a worker that raises is said once, in
a notification with the error's one line, never swallowed.

Textual posts `Worker.StateChanged` to the node that started the worker (the message does not bubble),
so the handler is a mixin that each screen with workers (and the app, for its own) puts first among its
bases. A worker that reports its own failure (a message carrying the error, as the History screen's
loader does) never reaches the ERROR state and is not said twice. A worker started with
`exit_on_error=False` is the kind this is for: with the default, Textual exits the app instead.
(Issue 22 takes the one-handler shape from Harlequin; the hook is Textual's own, textual/worker.py.)"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from engine.errors import TokentopError
from engine.terminal_text import one_line


class SaysWorkerFailures:
    """Mixin for a Screen or the App: `on_worker_state_changed` notifies a failed worker's error as one
    line (engine.terminal_text.one_line: escape sequences stripped, at most 300 characters); tokentop's
    own errors (engine.errors.TokentopError) are said as they are, others with their type's name."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        error = event.worker.error
        if event.state is not WorkerState.ERROR or error is None:
            return
        typed = not isinstance(error, TokentopError)
        self.notify(one_line(error, 300, typed=typed), severity="error", markup=False)  # type: ignore[attr-defined]
