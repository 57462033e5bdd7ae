"""The app's hold on runs: the session's orchestrator and a RunWatcher every screen renders from.

Owned by the app (or, for a screen hosted without TokentopApp, by that screen), never by a screen
that may be left: leaving a screen does not orphan its run, and returning shows it from the watcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from tui.messages import RunEvent

if TYPE_CHECKING:  # the orchestrator (numpy and all) is imported once an engine is ready, not before the first frame
    from engine.orchestrator import Job, JobView, RunWatcher


class AppRuns:
    def __init__(self, post: Callable[[Any], Any]):
        self._post = post
        self.watcher: RunWatcher | None = None
        self.session: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, session: Any) -> None:
        if session is None or session is self.session or getattr(session, "orchestrator", None) is None:
            return
        self.detach()
        if self.watcher is None:
            from engine.orchestrator import RunWatcher

            # Discrete events wake the UI thread; chunks only feed the watcher's meters (no message).
            self.watcher = RunWatcher(window_s=1.0, bucket_s=0.25, on_event=lambda event: self._post(RunEvent(event)))
        self.session = session
        self._unsubscribe = session.orchestrator.subscribe(self.watcher, chunks=True)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None

    # -- starting (raise engine.types.EngineError with a one-line message) -------------------------
    def start_interactive(self, request: Any) -> Job:
        return self._orchestrator().start_interactive(request)

    def start_suite(self, suite: Any, reps: int | None) -> Job:
        return self._orchestrator().start_suite(suite, reps)

    def start_load(self, spec: Any) -> Job:
        from data.jobs.load import start_load

        return start_load(self.session, spec)

    def _orchestrator(self):
        from engine.types import EngineError

        if self.session is None or self.session.orchestrator is None:
            raise EngineError("the engine is not ready")
        return self.session.orchestrator

    # -- observing and stopping ----------------------------------------------------------------------
    @property
    def current(self) -> Job | None:
        orchestrator = getattr(self.session, "orchestrator", None)
        return orchestrator.current if orchestrator is not None else None

    def view(self, kind: str) -> JobView | None:
        return self.watcher.view(kind) if self.watcher is not None else None

    def stop(self, wait: float | None = None) -> Job | None:
        """Stop the running job; with `wait`, block (a worker thread) until it is stored."""
        orchestrator = getattr(self.session, "orchestrator", None)
        return orchestrator.stop(wait) if orchestrator is not None else None
