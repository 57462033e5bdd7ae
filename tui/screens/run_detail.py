"""One stored run: its environment, per-case aggregates, and plotext charts (TPS of each request,
ITL distribution, tokens over time for one request)."""

from __future__ import annotations

import json
from itertools import accumulate

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from tui.format import CASE_COLUMNS, case_rows, client_health_lines, client_health_of, reasoning_line, where_line
from tui.screens.history import fmt_date, model_name
from tui.widgets.status_bar import StatusBar

ENV_KEYS = ("hostname", "device", "cpu", "cpu_count", "memory_gb", "os", "python", "vllm", "torch",
            "transformers", "cuda", "driver", "model_path")


def _value(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, separators=(",", ":"))
    return str(v)


class RunDetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="detail.back"),
        Binding("left_square_bracket", "request(-1)", "Prev req", id="detail.prev"),
        Binding("right_square_bracket", "request(1)", "Next req", id="detail.next"),
        Binding("c", "costs", "Costs", id="detail.costs"),
    ]

    class RunLoaded(Message):
        def __init__(self, run: dict | None, requests: list[dict], chunks: list[dict], error: str | None = None) -> None:
            super().__init__()
            self.run = run
            self.requests = requests
            self.chunks = chunks
            self.error = error

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict = {}
        self.requests: list[dict] = []
        self.offsets: dict[int, list[tuple[int, int]]] = {}
        self.request_pick = 0

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static("", id="detail-title")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Summary", id="tab-summary"):
                with VerticalScroll():
                    yield DataTable(id="detail-cases", cursor_type="row", show_cursor=False)
                    yield Static("", id="detail-env")
            with TabPane("TPS", id="tab-tps"):
                yield PlotextPlot(id="chart-tps")
            with TabPane("ITL", id="tab-itl"):
                yield PlotextPlot(id="chart-itl")
            with TabPane("Tokens/time", id="tab-tokens"):
                yield PlotextPlot(id="chart-tokens")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load_run()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail-load")
    def _load_run(self) -> None:
        """The database is read in a worker: another process may hold it for a moment."""
        store = self.app.store
        try:
            with store.reading():  # one open of the file for the three queries
                run = store.get_run(self.run_id)
                requests = store.get_requests(run["run_id"]) if run else []
                chunks = store.get_chunks(run["run_id"]) if run else []
        except Exception as exc:
            self.post_message(self.RunLoaded(None, [], [], f"{exc}".splitlines()[0] if str(exc) else type(exc).__name__))
            return
        self.post_message(self.RunLoaded(run, requests, chunks))

    @on(RunLoaded)
    def _run_loaded(self, message: RunLoaded) -> None:
        run = message.run
        if run is None:
            self.notify(message.error or f"run {self.run_id} not found", severity="error")
            self.app.pop_screen()
            return
        self.run = run
        self.requests = message.requests
        for c in message.chunks:
            self.offsets.setdefault(c["request_index"], []).append((c["t_ns"], c["tokens"]))
        ok = [r["request_index"] for r in self.requests if r["success"]]
        self.request_pick = ok[-1] if ok else 0
        self._title()
        self._summary()
        self._chart_tps()
        self._chart_itl()
        self._chart_tokens()
        if run.get("kind") == "load":
            self.load_frontier()

    # -- a load level: the priced frontier of its sweep, in its own tab -------------------------------
    class FrontierReady(Message):
        def __init__(self, frontier) -> None:
            super().__init__()
            self.frontier = frontier

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail-frontier")
    def load_frontier(self) -> None:
        from data.frontier import build_frontier

        try:
            self.post_message(self.FrontierReady(build_frontier(self.app.store, run_ids=[self.run["run_id"]])))
        except Exception:
            pass  # the other tabs stand; Compare (m) shows the frontier too

    @on(FrontierReady)
    async def _frontier_ready(self, msg: FrontierReady) -> None:
        from tui.widgets.frontier_chart import draw_frontier

        tabs = self.query_one(TabbedContent)
        if not self.query("#chart-frontier"):
            await tabs.add_pane(TabPane("Frontier", PlotextPlot(id="chart-frontier"), id="tab-frontier"))
        plot = self.query_one("#chart-frontier", PlotextPlot)
        draw_frontier(plot.plt, msg.frontier, title="this sweep: tok/s/GPU vs user tok/s, $/1M at each point")
        plot.refresh()

    def _title(self) -> None:
        r = self.run
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{r['run_id']} ", style="bold")
        t.append(f"{r.get('kind')} · {r.get('status')} · {fmt_date(r.get('started_at'))} · ")
        t.append(f"{r.get('engine')} · {model_name(r)} · {r.get('device')}")
        self.query_one("#detail-title", Static).update(t)

    def _summary(self) -> None:
        table = self.query_one("#detail-cases", DataTable)
        table.add_column("case", key="case")
        table.add_column("target", key="target")
        for header, key, _f in CASE_COLUMNS:
            table.add_column(header, key=key)
        for case_id, agg in case_rows(self.run):
            cells = [Text(str(case_id)), "–" if agg.get("target_tokens") is None else f"{agg['target_tokens']:.0f}"]
            for _h, key, pattern in CASE_COLUMNS:
                v = agg.get(key)
                cells.append(Text("–" if v is None else pattern.format(v), justify="right"))
            table.add_row(*cells)
        r = self.run
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        rows = [
            ("run", r["run_id"]), ("kind", r.get("kind")), ("status", r.get("status")),
            ("error", r.get("error")), ("started", fmt_date(r.get("started_at"))),
            ("duration", None if r.get("duration_s") is None else f"{r['duration_s']:.2f} s"),
            ("suite", r.get("suite")), ("reps", r.get("reps")), ("engine", r.get("engine")),
            ("model", r.get("model")), ("dtype", r.get("dtype")), ("engine args", r.get("engine_args")),
            ("host", r.get("hostname")), ("device", r.get("device")), ("GPU key", r.get("gpu_key")),
            ("where", where_line(r).removeprefix("where: ")), ("label", r.get("label")),
        ]
        env = r.get("environment") or {}
        rows.append(("roofline", roofline_text(r, env)))
        rows.append(("reasoning", reasoning_line((r.get("summary") or {}).get("overall") or {})))
        health_lines = client_health_lines(client_health_of(r))
        rows += [("client check", text) for text, style in health_lines if style == "dim"]
        rows += [(f"env {k}", env.get(k)) for k in ENV_KEYS if env.get(k) not in (None, "", [], {})]
        rows += [(f"env {k}", v) for k, v in env.items() if k not in ENV_KEYS and v not in (None, "", [], {})]
        for k, v in rows:
            if v not in (None, "", {}, []):
                grid.add_row(k, Text(_value(v)))
        for text, style in health_lines:
            if style != "dim":  # the client self-check's warnings stand out
                grid.add_row(Text("warning", style="yellow"), Text(text.removeprefix("warning: "), style="yellow"))
        self.query_one("#detail-env", Static).update(grid)

    def _chart_tps(self) -> None:
        plot = self.query_one("#chart-tps", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        by_case: dict[str, tuple[list[int], list[float]]] = {}
        for q in self.requests:
            if q["success"] and q["tps"] is not None:
                xs, ys = by_case.setdefault(q["case_id"] or "?", ([], []))
                xs.append(q["request_index"] + 1)
                ys.append(q["tps"])
        for case_id, (xs, ys) in by_case.items():
            plt.bar(xs, ys, label=case_id, width=0.6)
        plt.title("TPS of each request (tokens / E2EL)")
        plt.xlabel("request")
        plt.ylabel("tok/s")
        plot.refresh()

    def _chart_itl(self) -> None:
        plot = self.query_one("#chart-itl", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        itl = []
        ok = {q["request_index"] for q in self.requests if q["success"]}
        for idx, chunks in self.offsets.items():
            if idx in ok:
                ts = [t for t, _n in chunks]
                itl += [(b - a) / 1e6 for a, b in zip(ts, ts[1:])]
        if itl:
            plt.hist(itl, bins=30)
        plt.title(f"ITL distribution, {len(itl)} gaps (ms)")
        plt.xlabel("ms")
        plt.ylabel("count")
        plot.refresh()

    def _chart_tokens(self) -> None:
        plot = self.query_one("#chart-tokens", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        chunks = self.offsets.get(self.request_pick, [])
        req = next((q for q in self.requests if q["request_index"] == self.request_pick), None)
        if chunks:
            xs = [t / 1e9 for t, _n in chunks]
            ys = list(accumulate(n for _t, n in chunks))
            plt.plot(xs, ys, marker="braille")
        label = f"request {self.request_pick + 1}/{len(self.requests)}"
        if req is not None:
            label += f" ({req['case_id']} rep {req['rep'] + 1})"
        plt.title(f"tokens over time, {label} — [ ] other requests")
        plt.xlabel("s since sent")
        plt.ylabel("tokens")
        plot.refresh()

    def action_request(self, step: int) -> None:
        if not self.requests:
            return
        self.request_pick = (self.request_pick + step) % len(self.requests)
        self._chart_tokens()
        self.query_one(TabbedContent).active = "tab-tokens"

    def action_costs(self) -> None:
        self.app.open_costs([self.run_id])


def roofline_text(run: dict, env: dict) -> str:
    """The batch-1 decode ceiling of the run's GPU and model, and each case's share of it."""
    from data.load_runs import roofline_why_not, roofline_with_share

    desc = {"model": env.get("model_path") or run.get("model"), "dtype": run.get("dtype"),
            "engine_args": run.get("engine_args") or {}}
    try:
        roof = roofline_with_share(env, desc, run.get("summary") or {})
        why = None if roof else roofline_why_not(env, desc)
    except Exception as exc:
        roof, why = None, f"{type(exc).__name__}: {exc}"
    if not roof:
        return f"no batch-1 ceiling: {why or 'no bandwidth figure or weights for ' + (run.get('device') or 'this device')}"
    shares = ", ".join(f"{case} {pct:.0f}%" for case, pct in (roof.get("decode_pct_of_ceiling") or {}).items()
                       if pct is not None)
    text = (f"{roof['ceiling_tok_s']:.0f} tok/s on {roof['gpu']} ({roof['bandwidth_tb_s']:.2f} TB/s / "
            f"{roof['bytes_per_token_gb']:.2f} GB per token)")
    return text + (f"; decode rate = {shares} of it" if shares else "")
