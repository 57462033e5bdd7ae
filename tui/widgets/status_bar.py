"""One line at the top of every screen: engine, model, device, database — or start-up progress."""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CLASSES = "status-bar"

    # What the bar was drawn from: a refresh with the same inputs draws nothing (each update is a
    # layout pass of the whole screen, twice a second on every screen, a stream or not).
    _drawn_from: tuple | None = None

    def on_mount(self) -> None:
        self.refresh_status()
        self.set_interval(0.5, self.refresh_status)

    def refresh_status(self) -> None:
        describe = getattr(self.app, "status_parts", None)
        if describe is None:
            return
        state, engine, db = describe()
        width = self.size.width or self.app.size.width
        current = getattr(self.screen, "STATUS_KEY", None) or getattr(self.app, "current_mode", "")
        gpu = gpu_summary(getattr(getattr(self.app, "session", None), "gpu", None))
        inputs = (width, state, engine, db, current, gpu)
        if inputs == self._drawn_from:
            return
        self._drawn_from = inputs
        self.update(status_line(width, state, engine, db, current, gpu))


# The screen keys, shown on every screen (function keys: they never collide with typing).
SCREEN_KEYS = (("F2", "live", "Live"), ("F3", "suite", "Suite"), ("F4", "history", "History"),
               ("F5", "prices", "Prices"), ("F6", "load", "Load"), ("F7", "compare", "Compare"))
SEPARATOR = " │ "


def status_line(width: int, state: str, engine: str, db: str, current: str = "", gpu: str = "") -> Text:
    """The top line in `width` cells: every screen key, the engine and the database, whole parts only
    (a part that does not fit is left out or said shorter, never cut).

    state: "ready", "starting", "off" or "failed"; engine: the app's engine line ("vllm · model ·
    device", or "starting engine: <step> (<N> s)"); db: the database's path or label; current: the
    mode of the screen shown (its key underlined); gpu: gpu_summary()'s reading, shown where room is
    left. The first that fits of, in this order (richest engine line first within each):
      1. every key labelled ("F2 Live" from 100 columns, nvtop's "F2Live" below), the engine and the
         database (its file name alone, without "db ", when the path does not fit);
      2. the same without the database;
      while the engine starts, the step in its own words matters more than one key's label, and the label
      more than a "the" in the step ("starting: loading the model 3 s", "starting: downloading model 1 s"):
      3. the last key other than the current screen's unlabelled ("F7" for "F7Compare"), the step whole;
      4. every key labelled, the step without "the";
      5. more keys unlabelled, from the right (the current screen's never);
      6. the state alone.
    """
    engine_style = "bold" if state == "ready" else ("italic" if state == "starting" else "bold red")
    variants = shorter_variants(engine, state)
    if state == "starting":  # the start-up says "starting", its step and its seconds
        good = [v for v in variants if v.startswith(("starting:", "starting engine:"))]
    else:  # ready: every form names the engine; off, failed: down to "no engine", "engine failed"
        good = variants[:-1] if state == "ready" and len(variants) > 1 else variants
    whole, short = (good[:2], good[2:]) if state == "starting" else (good, [])
    dbs = _unique([f"db {db}", f"db {_file_name(db)}",
                   _file_name(db) if _file_name(db).endswith((".duckdb", ".db")) else ""]) if db else []
    # One form of the keys per width, whatever the engine does (the keys never move as it starts): nvtop's
    # "F2Live" below 100 columns, where "F2 Live" would leave the engine and the database out.
    keys = _keys(current, spaced=width >= 100)
    if width >= 120:
        keys = Text(" tokentop ", style="bold reverse") + keys
    unlabelled = [_keys(current, spaced=width >= 100, unlabelled=n) for n in range(1, len(SCREEN_KEYS))]
    plans = [[(text, keys, db_part) for text in whole for db_part in dbs],
             [(text, keys, "") for text in whole],
             [(text, unlabelled[0], "") for text in whole[1:]],
             [(text, keys, db_part) for text in short for db_part in [*dbs, ""]],
             [(text, less, "") for less in unlabelled for text in whole[1:] + short],
             [(variants[-1], unlabelled[-1], "")]]
    for plan in plans:
        for text, keys, db_part in plan:
            need = keys.cell_len + len(SEPARATOR) + len(text) + (len(SEPARATOR) + len(db_part) if db_part else 0)
            if text and need <= width:
                line = keys.copy()
                line.append(SEPARATOR, style="dim")
                line.append(text, style=engine_style)
                if gpu and need + len(SEPARATOR) + len(gpu) <= width:
                    line.append(SEPARATOR, style="dim")
                    line.append(gpu)
                if db_part:
                    line.append(SEPARATOR, style="dim")
                    line.append(db_part)
                return line
    return unlabelled[-1]


def _keys(current: str, *, spaced: bool, unlabelled: int = 0) -> Text:
    """The screen keys: " F2 Live F3 Suite …" (spaced) or "F2Live F3Suite …" (nvtop's and htop's
    form); the last `unlabelled` keys other than the current screen's without their label."""
    line = Text(no_wrap=True, overflow="crop")
    drop = [mode for _k, mode, _l in SCREEN_KEYS if mode != current][len(SCREEN_KEYS) - 1 - unlabelled:] \
        if unlabelled else []
    for i, (key, mode, label) in enumerate(SCREEN_KEYS):
        if spaced or i:
            line.append(" ")
        line.append(key, style="bold")
        if mode not in drop:
            line.append(f" {label}" if spaced else label, style="bold underline" if mode == current else "dim")
    return line


def _file_name(db: str) -> str:
    return db.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or db


def _unique(items: list[str]) -> list[str]:
    return [x for i, x in enumerate(items) if x and x not in items[:i]]


def shorter_variants(engine: str, state: str) -> list[str]:
    """The engine line, then shorter forms of it made of whole " · " parts (engine · model, engine ·
    device, engine), then the state alone ("no engine" when off, "engine failed").
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
    if len(parts) == 3:  # engine · model · device: the engine stays in every form
        variants += [" · ".join(parts[:2]), f"{parts[0]} · {parts[2]}", parts[0]]
    return [*variants, {"off": "no engine", "failed": "engine failed"}.get(state, state)]


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
