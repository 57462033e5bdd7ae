"""One line at the top of every screen: engine, model, device, database — or start-up progress."""

from __future__ import annotations

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
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" tokentop ", style="bold reverse")
        current = getattr(self.app, "current_mode", "")
        for key, mode, label in (("1", "live", "Live"), ("2", "suite", "Suite"), ("3", "history", "History")):
            line.append(" ")
            line.append(key, style="bold")
            line.append(f" {label}", style="bold underline" if mode == current else "dim")
        line.append("  │ ", style="dim")
        line.append(engine, style="bold" if state == "ready" else ("italic" if state == "starting" else "bold red"))
        gpu = gpu_summary(getattr(getattr(self.app, "session", None), "gpu", None))
        if gpu:
            line.append("  │ ", style="dim")
            line.append(gpu)
        line.append("  │  db ", style="dim")
        line.append(db)
        self.update(line)


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
