"""Test doubles for `tokentop fleet`: SkyPilot replaced at the fleet's one boundary (data.fleet.launcher.
Launcher) by a fake that records every call and plays a script per cell, and a clock the follower's
waits move forward (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data.fleet.launcher import RUNNING, ClusterInfo, Launched, Progress


class FakeClock:
    """time.monotonic for the follower; wait(s) moves it on at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


Step = Progress | Callable[[str, dict], Progress] | type[BaseException] | BaseException


class RecordingSkyLauncher:
    """Stands in for SkyPilot (sky.launch / api_status / job_status / down / status) at the Launcher
    boundary. `scripts[cell_index]` is the list of answers its cluster gives to successive polls (the
    last one repeats); an answer may be a Progress, a function (cluster, task) -> Progress that acts as
    the cell would (record runs, push them), or KeyboardInterrupt (the user's Ctrl-C arrives during that
    call). `interrupt_on_launch` = a cell index whose launch call meets the Ctrl-C; `refuse_launch` = cell index
    -> the exception SkyPilot raises at its launch."""

    def __init__(self, scripts: dict[int, list[Step]], *, launched: dict[int, Launched] | None = None,
                 already_up: list[str] | None = None, interrupt_on_launch: int | None = None,
                 refuse_launch: dict[int, Exception] | None = None) -> None:
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.launched = launched or {}
        self.calls: list[tuple[str, str]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.idle_minutes: dict[str, int] = {}
        self.up: list[str] = list(already_up or [])
        self.index: dict[str, int] = {}
        self.interrupt_on_launch = interrupt_on_launch
        self.refuse_launch = refuse_launch or {}

    def launch(self, cluster: str, task: dict[str, Any], *, secrets: dict[str, str], idle_minutes: int) -> None:
        index = int(cluster.split("-")[2])  # tt-<fleet>-<index>-...
        self.calls.append(("launch", cluster))
        self.tasks[cluster] = task
        self.secrets[cluster] = dict(secrets)
        self.idle_minutes[cluster] = idle_minutes
        self.index[cluster] = index
        self.up.append(cluster)
        if self.interrupt_on_launch == index:
            raise KeyboardInterrupt
        if index in self.refuse_launch:
            raise self.refuse_launch[index]

    def poll(self, cluster: str) -> Progress:
        self.calls.append(("poll", cluster))
        script = self.scripts.get(self.index[cluster]) or [Progress(RUNNING)]
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, BaseException) or (isinstance(step, type) and issubclass(step, BaseException)):
            raise step
        if callable(step) and not isinstance(step, Progress):
            step = step(cluster, self.tasks[cluster])
        if step.launched is None and self.index[cluster] in self.launched and step.state != "provisioning":
            step = Progress(step.state, step.detail, self.launched[self.index[cluster]])
        return step

    def down(self, cluster: str) -> None:
        self.calls.append(("down", cluster))
        if cluster in self.up:
            self.up.remove(cluster)

    def clusters(self) -> list[ClusterInfo]:
        self.calls.append(("clusters", ""))
        return [ClusterInfo(name, "UP", self.launched.get(self.index.get(name, -1))) for name in self.up]

    def downed(self) -> list[str]:
        return [c for verb, c in self.calls if verb == "down"]
