"""Typed messages that workers post to the app (workers never touch widgets). Each is a dataclass of
what it carries (Textual's Message initialises itself in __post_init__ for this, textual/message.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class EngineProgress(Message):
    """A line of the engine's start-up (loading weights, downloading, compiling...)."""

    text: str


@dataclass
class EngineReady(Message):
    """The engine is up: the data.jobs.session.Session that holds it."""

    session: Any


@dataclass
class EngineFailed(Message):
    """The engine could not start: its one line, and whether the settings were bad (the app exits 2)."""

    message: str
    bad_request: bool


@dataclass
class RunEvent(Message):
    """An orchestrator event (engine/orchestrator.py), posted from the thread that emitted it."""

    event: Any


@dataclass
class QuitProgress(Message):
    """The quit thread's progress (stopping, storing, engine down); `done` asks the app to exit."""

    text: str
    done: bool = False


@dataclass
class ClientHealthWarnings(Message):
    """A run's client self-check crossed a threshold (engine.measure.client_health): the app shows each warning."""

    run_id: str | None
    warnings: list[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.warnings = list(self.warnings)


@dataclass
class PushReport(Message):
    """A background push of finished runs to TOKENTOP_REMOTE: (PushResult, None) or (None, error)."""

    result: Any
    error: str | None
