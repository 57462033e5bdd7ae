"""Progress and ETA of a run, counted in tokens where the requests' lengths are known.

A suite's cases differ tenfold in length (the article's: 50, 200 and 500 tokens), so "3 of 30 requests
done" says little about the time left: after the ten 50-token requests a request-count ETA promises a
third of the suite is done when a tenth of its tokens are. Counted in output tokens (each request's
target, known when lengths are enforced, as suites and synthetic load enforce them), the estimate holds
from the first request on. Where a length is unknown (a request without a target), progress counts
requests instead, and says so (`unit`).

Used by `tokentop bench` and `load` (their progress lines) and the app's Suite and Load screens, so the
CLI and the app give the same ETA.
"""

from __future__ import annotations

import time
from typing import Sequence

TOKENS = "tokens"
REQUESTS = "requests"


def planned_lengths(requests) -> list[int | None]:
    """Each request's output length (tokens) when it is enforced (known before it runs), else None."""
    return [r.max_tokens if getattr(r, "enforce_length", False) else None for r in requests]


def workload_lengths(workload, num_prompts: int) -> list[int | None]:
    """A load level's planned output lengths, one per request it will send — a conversation's every turn
    included, requests a rule drops (prefix_repetition) not (engine.workloads.base.Workload.planned_lengths);
    None where a length is unknown before the request runs (then progress counts requests)."""
    planned = getattr(workload, "planned_lengths", None)
    if planned is not None:
        return list(planned(num_prompts))
    length = getattr(workload, "output_len", None)
    enforced = getattr(workload, "enforce_length", False)
    return [int(length) if length and enforced else None] * max(0, int(num_prompts))


class TokenProgress:
    """Progress over planned requests: `finish(i)` when request i ends, `live(tokens)` for the tokens
    streamed so far by the requests still running. Units are output tokens when every planned request
    has a target length (`targets`, tokens), else requests. Times are seconds of time.monotonic()."""

    def __init__(self, targets: Sequence[int | None], now: float | None = None):
        self.targets = [int(t) if t else None for t in targets]
        self.unit = TOKENS if self.targets and all(t for t in self.targets) else REQUESTS
        self.total = float(sum(self.targets)) if self.unit == TOKENS else float(len(self.targets))  # type: ignore[arg-type]
        self.finished: set[int] = set()
        self.done = 0.0  # units of the finished requests
        self.in_flight = 0.0  # units streamed by requests not finished yet (tokens; 0 when counting requests)
        self.t0 = time.monotonic() if now is None else now

    def _size(self, index: int) -> float:
        if self.unit == REQUESTS:
            return 1.0
        return float(self.targets[index] or 0) if 0 <= index < len(self.targets) else 0.0

    def finish(self, index: int) -> None:
        """Request `index` ended (finished, failed or stopped): its whole planned size is done."""
        if index not in self.finished:
            self.finished.add(index)
            self.done += self._size(index)

    def live(self, tokens: float) -> None:
        """Tokens streamed so far by requests still running (counting tokens only)."""
        self.in_flight = max(0.0, float(tokens)) if self.unit == TOKENS else 0.0

    @property
    def progress(self) -> float:
        """Units done: finished requests plus what the running ones have streamed (never past total)."""
        return min(self.total, self.done + self.in_flight)

    @property
    def fraction(self) -> float:
        return self.progress / self.total if self.total else 1.0

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far (elapsed / units done × units left), or None before any unit."""
        now = time.monotonic() if now is None else now
        done = self.progress
        if done <= 0:
            return None
        return max(0.0, (now - self.t0) / done * (self.total - done))

    def text(self, now: float | None = None) -> str:
        """'1.2k/7.5k tok · ETA 0:42' (or '3/30 req · ETA ...')."""
        eta = self.eta_s(now)
        unit = "tok" if self.unit == TOKENS else "req"
        return f"{_count(self.progress)}/{_count(self.total)} {unit} · ETA {clock(eta)}"


class LevelProgress:
    """A load level's progress as a screen polls it (the Load screen's 4 Hz tick): the requests that
    ended (`ended`: finished, failed or stopped; each counts its whole planned length) plus the output
    tokens the requests in flight have streamed so far (`streaming`, engine.load.driver.LiveLoad's
    streamed_tokens), so the count and the ETA move while a long request streams instead of jumping when
    it ends. Counted in tokens when every planned length is known (`targets`, workload_lengths), else in
    requests (streamed tokens then do not count). Never goes back: a request that ended is counted in
    `ended` a moment after its tokens left `streaming` (two counters read without a lock), so what was
    shown is kept until the counts catch up. `t0`: time.monotonic() seconds when the level began."""

    def __init__(self, targets: Sequence[int | None], t0: float):
        self.tokens = TokenProgress(targets, now=t0)
        self._ended = 0

    def update(self, ended: int, streaming: float) -> None:
        """The counters read now: `ended` requests (the first ones planned count as ended: their lengths
        are one figure or near it), `streaming` tokens from the ones in flight."""
        shown = self.tokens.progress
        for i in range(self._ended, min(int(ended), len(self.tokens.targets))):
            self.tokens.finish(i)
        self._ended = max(self._ended, int(ended))
        self.tokens.live(max(float(streaming), shown - self.tokens.done))

    @property
    def unit(self) -> str:
        return self.tokens.unit

    @property
    def progress(self) -> float:
        return self.tokens.progress

    def eta_s(self, now: float | None = None) -> float | None:
        return self.tokens.eta_s(now)

    def text(self, now: float | None = None) -> str:
        """'1.2k/7.5k tok · ETA 0:42' (or '3/30 req · ETA ...')."""
        return self.tokens.text(now)


def _count(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:.0f}"


def clock(seconds: float | None) -> str:
    """'0:42', '12:05', '1:02:03'; '–:––' when not known yet."""
    if seconds is None:
        return "–:––"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
