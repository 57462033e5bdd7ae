"""GPU panel: utilisation, memory, power and temperature per GPU, with sparklines (NVML).

Reads a GpuSampler (engine/telemetry/gpu.py) on a timer; never blocks on NVML itself. On a machine
without a GPU it says so once, with why ("no GPU (NVML unavailable)", then "Driver Not Loaded").
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline, Static

from engine.telemetry.gpu import GpuSample, GpuSampler

HISTORY = 120


def bar(fraction: float | None, width: int = 14) -> str:
    if fraction is None:
        return "·" * width
    fraction = max(0.0, min(1.0, fraction))
    full = int(round(fraction * width))
    return "█" * full + "░" * (width - full)


def gpu_line(sample: GpuSample) -> Text:
    """One GPU's gauges as plain Text (names come from the driver: never markup)."""
    mem_frac = ((sample.mem_used_mb / sample.mem_total_mb)
                if sample.mem_used_mb is not None and sample.mem_total_mb else None)
    pwr_frac = (sample.power_w / sample.power_limit_w) if sample.power_w is not None and sample.power_limit_w else None
    util = sample.util_pct
    t = Text()
    t.append("util ", style="dim")
    t.append(bar(util / 100 if util is not None else None), style="green")
    t.append(f" {util:3.0f} %" if util is not None else "   – %")
    t.append("   mem ", style="dim")
    t.append(bar(mem_frac), style="cyan")
    if sample.mem_used_mb is not None and sample.mem_total_mb:
        t.append(f" {sample.mem_used_mb / 1024:.1f}/{sample.mem_total_mb / 1024:.0f} GiB")
    t.append("\npower ", style="dim")
    t.append(bar(pwr_frac), style="yellow")
    if sample.power_w is not None:
        limit = f"/{sample.power_limit_w:.0f}" if sample.power_limit_w else ""
        t.append(f" {sample.power_w:.0f}{limit} W")
    t.append("   temp ", style="dim")
    t.append(f"{sample.temp_c:.0f} °C" if sample.temp_c is not None else "–")
    if sample.sm_clock_mhz is not None:
        t.append("   SM ", style="dim")
        t.append(f"{sample.sm_clock_mhz:.0f} MHz")
    if sample.mem_clock_mhz is not None:
        t.append("   mem ", style="dim")
        t.append(f"{sample.mem_clock_mhz:.0f} MHz")
    return t


def no_gpu_text(note: str | None) -> str:
    """What the panel says without a GPU, "no GPU" once: the sampler's note (engine.telemetry.gpu:
    "no GPU (NVML unavailable: Driver Not Loaded)") as its headline and, on the next line, the why
    ("no GPU (NVML unavailable)\nDriver Not Loaded"); a note of another shape as it is; "no GPU"
    without one."""
    if not note:
        return "no GPU"
    m = re.fullmatch(r"(no GPU[^(]*)\(([^:()]+): (.+)\)", note, re.S)
    return f"{m.group(1)}({m.group(2)})\n{m.group(3)}" if m else note


class GpuPanel(Vertical):
    """Pass a running GpuSampler to share one; without it the panel starts (and stops) its own."""

    DEFAULT_CLASSES = "gpu-panel"
    # Styles live in gpu_panel.tcss; loaded as DEFAULT_CSS so the panel is styled wherever it is mounted.
    DEFAULT_CSS = Path(__file__).with_name("gpu_panel.tcss").read_text(encoding="utf-8")

    def __init__(self, sampler: GpuSampler | None = None, *, refresh_s: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.sampler = sampler
        self._owns = sampler is None
        self.refresh_s = refresh_s
        self._util: dict[int, deque] = {}
        self._power: dict[int, deque] = {}
        self.unavailable_text = ""

    def compose(self) -> ComposeResult:
        yield Label("GPU", classes="gpu-title")
        yield Static("", id="gpu-status", classes="gpu-status")
        yield Vertical(id="gpu-rows")

    def on_mount(self) -> None:
        if self.sampler is None:
            self.sampler = GpuSampler()
            self.sampler.start()
        elif not self.sampler.available and self.sampler.note is None:
            self.sampler.open()
        if not self.sampler.available:
            self.unavailable_text = no_gpu_text(self.sampler.note)
            self.query_one("#gpu-status", Static).update(Text(self.unavailable_text))
            self.add_class("no-gpu")
            return
        rows = self.query_one("#gpu-rows", Vertical)
        for gpu in self.sampler.gpus:
            i = gpu["index"]
            self._util[i] = deque(maxlen=HISTORY)
            self._power[i] = deque(maxlen=HISTORY)
            rows.mount(
                Label(Text(f"{i}: {gpu['name']}"), classes="gpu-name"),
                Static("", id=f"gpu-line-{i}", classes="gpu-line"),
                Sparkline([], id=f"gpu-util-{i}", classes="gpu-spark gpu-util"),
                Sparkline([], id=f"gpu-power-{i}", classes="gpu-spark gpu-power"),
            )
        self.set_interval(self.refresh_s, self.refresh_samples)

    def refresh_samples(self) -> None:
        sampler = self.sampler
        if sampler is None or not sampler.available:
            return
        if self._owns is False and sampler._thread is None:
            sampler.sample_once()  # a shared sampler that is not running: read once per tick
        latest = sampler.latest()
        if not latest:
            return
        with self.app.batch_update():
            for s in latest:
                if s.gpu_index not in self._util:
                    continue
                self._util[s.gpu_index].append(s.util_pct or 0.0)
                self._power[s.gpu_index].append(s.power_w or 0.0)
                self.query_one(f"#gpu-line-{s.gpu_index}", Static).update(gpu_line(s))
                self.query_one(f"#gpu-util-{s.gpu_index}", Sparkline).data = list(self._util[s.gpu_index])
                self.query_one(f"#gpu-power-{s.gpu_index}", Sparkline).data = list(self._power[s.gpu_index])

    def on_unmount(self) -> None:
        if self._owns and self.sampler is not None:
            self.sampler.stop()
