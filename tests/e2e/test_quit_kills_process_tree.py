"""Quitting in seconds (issue 15): EngineHost.shutdown gives an engine's processes a short grace, then
kills the whole tree it started — grandchildren too (vLLM's engine process starts its own workers) — and
leaves every process that was there before alone."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time

from engine.engines.base import Engine
from engine.engines.host import EngineHost
from tests.support.first_hour_support import linger_with_a_child
from tests.support.wait import wait_until


class LingeringEngine(Engine):
    """Starts a process tree and does not stop it on close (as an engine whose teardown is slow)."""

    name = "lingering"

    def __init__(self, pid_file: str):
        self.pid_file = pid_file
        self.proc = None

    async def start(self, progress) -> None:
        self.proc = multiprocessing.get_context("spawn").Process(target=linger_with_a_child, args=(self.pid_file,),
                                                                 daemon=False)
        self.proc.start()

    async def _generate(self, request, record, on_chunk) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def describe(self):
        return {"engine": self.name}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_shutdown_kills_the_engines_grandchildren_and_nothing_else(tmp_path):
    bystander = subprocess.Popen(["sleep", "300"])  # a process of ours the engine did not start
    pid_file = tmp_path / "worker.pid"
    host = EngineHost(LingeringEngine(str(pid_file)))
    try:
        host.start().result(timeout=60)
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60, "the worker's pid file")
        worker = int(pid_file.read_text())
        child = host.engine.proc.pid
        assert _alive(worker) and _alive(child)
        t0 = time.monotonic()
        host.shutdown()
        took = time.monotonic() - t0
        wait_until(lambda: not (_alive(worker) or _alive(child)), 5, quiet=True)  # asserted below
        assert not _alive(child) and not _alive(worker), "the engine's process tree outlived its shutdown"
        assert took < 5, took
        assert _alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
        for pid in (locals().get("worker"),):
            if pid:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
