"""One line at the top of every screen: engine, model, device, database — or start-up progress."""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CLASSES = "status-bar"

    def on_mount(self) -> None:
        self.refresh_status()
        self.set_interval(0.5, self.refresh_status)

    def refresh_status(self) -> None:
        describe = getattr(self.app, "status_parts", None)
        if describe is None:
            return
        state, engine, db = describe()
        width = self.size.width or self.app.size.width
        line = Text(no_wrap=True, overflow="crop")
        if width >= 100:  # at 80 columns the screen keys and the engine matter more than the name
            line.append(" tokentop ", style="bold reverse")
        current = getattr(self.screen, "STATUS_KEY", None) or getattr(self.app, "current_mode", "")
        for key, mode, label in SCREEN_KEYS:
            line.append(" ")
            line.append(key, style="bold")
            line.append(f" {label}", style="bold underline" if mode == current else "dim")
        # Whole parts only, most important first: a part that does not fit is left out, never cut.
        engine_style = "bold" if state == "ready" else ("italic" if state == "starting" else "bold red")
        parts = [(variant, engine_style) for variant in shorter_variants(engine, state)]
        gpu = gpu_summary(getattr(getattr(self.app, "session", None), "gpu", None))
        room = width - line.cell_len
        for text, style in parts:
            if text and len(text) + 3 <= room:
                line.append(" │ ", style="dim")
                line.append(text, style=style)
                room -= len(text) + 3
                break
        for extra in (gpu, f"db {db}" if db else ""):
            if extra and len(extra) + 3 <= room:
                line.append(" │ ", style="dim")
                line.append(extra)
                room -= len(extra) + 3
        self.update(line)


# The screen keys, shown on every screen (function keys: they never collide with typing).
SCREEN_KEYS = (("F2", "live", "Live"), ("F3", "suite", "Suite"), ("F4", "history", "History"),
               ("F5", "prices", "Prices"), ("F6", "load", "Load"))


def shorter_variants(engine: str, state: str) -> list[str]:
    """The engine line, then shorter forms of it made of whole " · " parts, then the state alone.
    While the engine starts, the short forms keep the step and the seconds ("loading the model 12 s"):
    at 80 columns the start-up is never just "starting"."""
    if state == "starting":
        m = re.match(r"starting engine: (.*) \((\d+) s\)$", engine, re.S)
        if m:
            step, secs = startup_step(m.group(1)), m.group(2)
            # "the " dropped before the bare step: at 80 columns with every screen key shown, "starting:"
            # and the step must fit in 31 cells ("starting: preparing model 12 s").
            short = step.replace(" the ", " ")
            return [engine, f"starting: {step} {secs} s", f"starting: {short} {secs} s", f"{step} {secs} s",
                    f"starting {secs} s", state]
    parts = [p for p in engine.split(" · ") if p]
    variants = [" · ".join(parts)]
    if len(parts) == 3:  # engine · model · device
        variants += [" · ".join(parts[1:]), parts[1], parts[0]]
    return [*variants, state]


def startup_step(message: str) -> str:
    """The step a start-up progress message stands for, in a few words ("importing vLLM")."""
    low = message.lower()
    if low.startswith("download"):  # engine.engines.hub: a hub id fetched before the engine starts
        m = re.search(r"\((\d+)%\), .*ETA (.+)$", message)
        return f"downloading {m.group(1)}% (ETA {m.group(2)})" if m else (
            "downloading the model" if low.startswith("downloading") else "downloaded")
    for needle, step in (("warming up", "warming up"), ("engine ready", "warming up"),
                         ("imported", "loading the model"), ("loading", "loading the model"),
                         ("importing", "importing vLLM"),
                         ("convert", "converting the model"), ("--model", "preparing the model"),
                         ("connected", "connected"), ("connect", "connecting"), ("ready", "ready")):
        if needle in low:
            return step
    first = re.split(r"[:;(]", message, maxsplit=1)[0].strip()
    return first if len(first) <= 24 else "starting"


def gpu_summary(sampler) -> str:
    """A compact nvtop-style reading of the first GPU, visible on every screen during any run."""
    if sampler is None or not getattr(sampler, "available", False):
        return ""
    latest = sampler.latest()
    if not latest:
        return ""
    s = latest[0]
    parts = ["GPU" + (f"×{len(latest)}" if len(latest) > 1 else "")]
    if s.util_pct is not None:
        parts.append(f"{s.util_pct:.0f}%")
    if s.mem_used_mb is not None and s.mem_total_mb:
        parts.append(f"{s.mem_used_mb / 1024:.0f}/{s.mem_total_mb / 1024:.0f}G")
    if s.power_w is not None:
        parts.append(f"{s.power_w:.0f}W")
    if s.temp_c is not None:
        parts.append(f"{s.temp_c:.0f}°C")
    return " ".join(parts)
