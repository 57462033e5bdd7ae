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


class InteractiveStored(Message):
    def __init__(self, run_id: str | None, status: str, error: str | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status
        self.error = error


class CaseStarted(Message):
    def __init__(self, index: int, total: int, request: Any) -> None:
        super().__init__()
        self.index = index
        self.total = total
        self.request = request


class RequestFinished(Message):
    def __init__(self, index: int, record: Any, metrics: Any) -> None:
        super().__init__()
        self.index = index
        self.record = record
        self.metrics = metrics


class SuiteFinished(Message):
    def __init__(self, run_id: str | None, status: str, error: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status
        self.error = error




class ClientHealthWarnings(Message):
    """A run's client self-check crossed a threshold (engine.client_health): the app shows each warning."""

    def __init__(self, run_id: str | None, warnings: list[str]) -> None:
        super().__init__()
        self.run_id = run_id
        self.warnings = list(warnings)
