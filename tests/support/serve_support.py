"""Helpers for the `tokentop serve` tests: run the server, read its output, find its processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from tests.support.wait import wait_until


class ServerProcess:
    """A `tokentop serve`-like command started in the background, its output collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, cwd=cwd, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        found = wait_until(lambda: re.search(pattern, self.output) or self.proc.poll() is not None, timeout,
                           step=0.1, quiet=True)  # the pattern, or the server ended
        if isinstance(found, re.Match):
            return found
        raise AssertionError(f"no {pattern!r} in the server's output:\n{self.output}")

    def url(self, timeout: float = 30) -> str:
        return self.wait_for_output(r"serving the app on\s+(http://\S+)", timeout).group(1)

    def stop(self, sig: int, timeout: float = 90) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Test clean-up: whatever is left of the server's session (SIGKILL to every process of its
        session and below it), then the server itself."""
        for pid in session_members({self.proc.pid}) | descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, session id, state) of a live process, None if gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
    return None if state in ("Z", "X") else (ppid, sid, state)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        info = _stat(pid)
        if info:
            children.setdefault(info[0], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def children(parent: int) -> set[int]:
    return {pid for pid in all_pids() if (info := _stat(pid)) and info[0] == parent}


def alive(pids) -> set[int]:
    return {pid for pid in pids if _stat(pid) is not None}


def session_members(sids) -> set[int]:
    sids = set(sids)
    return {pid for pid in all_pids() if (info := _stat(pid)) and info[1] in sids}


def session_of(pid: int) -> int | None:
    info = _stat(pid)
    return info[1] if info else None


def wait_until_gone(pids, timeout: float) -> set[int]:
    wait_until(lambda: not alive(pids), timeout, step=0.1, quiet=True)
    return alive(pids)
