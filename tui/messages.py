"""Typed messages that workers post to the app (workers never touch widgets)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineProgress(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class EngineReady(Message):
    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session


class EngineFailed(Message):
    def __init__(self, message: str, bad_request: bool) -> None:
        super().__init__()
        self.message = message
        self.bad_request = bad_request


class RunEvent(Message):
    """An orchestrator event (engine/orchestrator.py), posted from the thread that emitted it."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class QuitProgress(Message):
    """The quit thread's progress (stopping, storing, engine down); `done` asks the app to exit."""

    def __init__(self, text: str, done: bool = False) -> None:
        super().__init__()
        self.text = text
        self.done = done


class ClientHealthWarnings(Message):
    """A run's client self-check crossed a threshold (engine.measure.client_health): the app shows each warning."""

    def __init__(self, run_id: str | None, warnings: list[str]) -> None:
        super().__init__()
        self.run_id = run_id
        self.warnings = list(warnings)


class PushReport(Message):
    """A background push of finished runs to TOKENTOP_REMOTE: (PushResult, None) or (None, error)."""

    def __init__(self, result: Any, error: str | None) -> None:
        super().__init__()
        self.result = result
        self.error = error
