"""Cells for the GPU x provider matrix, the SLO answer and the frontier: shared by `tokentop compare`
and the Compare matrix screen, so both show the same figures the same way. Rendering only."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from pricing.cost import TpsBasis

B1 = TpsBasis.BATCH1.label
LOAD = TpsBasis.THROUGHPUT.label
SOURCE_MARK = {"paid": "P", "live": "L", "catalog": "C", "snapshot": "S"}
SOURCE_LEGEND = "$/h: P price paid, L live, C catalog, S snapshot"
MEASURED_MARK = "*"
MEASURED_LEGEND = "* measured on this provider (else estimated from your runs elsewhere)"
CHEAPEST = "◀"

# (header, width, justify): the first seven fit 80 columns with room for the table's gaps.
MATRIX_COLUMNS = (
    ("GPU", 14, "left"), ("provider", 10, "left"), ("b1 TPS", 9, "right"), ("load tok/s", 10, "right"),
    ("$/h", 6, "right"), ("$/1M b1", 7, "right"), ("$/1M ld", 7, "right"),
    ("TTFT", 6, "right"), ("art. $/1M", 9, "right"), ("art. TPS", 8, "right"), ("runs", 5, "right"),
)
NARROW = 7  # columns shown at 80 columns; the rest are one key away (or scrolled to)


def stat_text(stat: Any, digits: int = 0) -> str:
    """'230±4 ·3' — mean ± sample std over runs, and how many runs."""
    if stat is None:
        return "–"
    mean, std, n = ((stat.mean, stat.std, stat.n) if not isinstance(stat, dict)
                    else (stat["mean"], stat["std"], stat["n"]))
    spread = f"±{std:.{digits}f}" if n > 1 else ""
    return f"{mean:.{digits}f}{spread} ·{n}"


def gpu_cell(row: Any) -> str:
    count = f" ×{row.gpus_used}" if row.gpus_used > 1 else ""
    return f"{row.gpu_key}{count}"


def provider_cell(row: Any) -> str:
    return row.provider_name + (MEASURED_MARK if row.measured_here else "")


def price_cell(price: Any) -> str:
    if price is None:
        return "–"
    return f"{price.usd_per_hour:.2f} {SOURCE_MARK.get(price.source, '?')}"


def cost_cell(row: Any, basis: str) -> Text:
    value = row.costs.get(basis)
    if value is None:
        return Text("–", justify="right")
    cheapest = basis in row.cheapest
    return Text(f"{value:.2f}" + (CHEAPEST if cheapest else " "), style="bold green" if cheapest else "",
                justify="right")


def matrix_cells(row: Any) -> list[Text]:
    ref = row.reference or {}
    ttft = "–" if row.ttft_ms is None else f"{row.ttft_ms.mean:.0f}"
    cells = [
        Text(gpu_cell(row)), Text(provider_cell(row), style="bold" if row.measured_here else ""),
        Text(stat_text(row.batch1_tps), justify="right"), Text(stat_text(row.load_throughput), justify="right"),
        Text(price_cell(row.price), justify="right"), cost_cell(row, B1), cost_cell(row, LOAD),
        Text(ttft, justify="right"),
        Text(f"{ref['usd_per_million']:.2f}" if ref else "–", style="dim", justify="right"),
        Text(f"{ref['tps']:.0f}" if ref else "–", style="dim", justify="right"),
        Text(str(len(row.run_ids)), justify="right"),
    ]
    return cells


def chart_label(row: Any) -> str:
    """A short y-axis label for the $/1M chart: 'H100-SXM RunPod*'."""
    gpu = row.gpu_key.split("-", 1)[0][:7] + (f"x{row.gpus_used}" if row.gpus_used > 1 else "")
    return f"{gpu} {provider_cell(row)[:10]}"


def level_cells(s: Any, percentile: float) -> list[str]:
    ok = "yes" if s.meets else ("no" if s.meets is not None else "")
    return [s.label, f"{s.completed}/{s.completed + s.failed}", f"{s.output_throughput:.1f}",
            f"{s.ttft_ms:.0f}", f"{s.tpot_ms:.1f}", "–" if s.goodput is None else f"{s.goodput:.2f}", ok]


LEVEL_HEADERS = ("level", "ok", "tok/s", "TTFT", "TPOT", "goodput", "meets")


def frontier_cells(p: Any) -> list[Text]:
    lv = p.level
    marks = ("U" if p.pareto_user else "") + ("T" if p.pareto_ttft else "")
    cost = "–" if p.cheapest_usd_per_million is None else f"{p.cheapest_usd_per_million:.2f}"
    style = "bold green" if marks else ""
    return [Text(p.curve), Text(short_level(lv.label)),
            Text(f"{lv.per_gpu_throughput:.1f}", justify="right"),
            Text("–" if lv.per_user_tps is None else f"{lv.per_user_tps:.1f}", justify="right"),
            Text(f"{lv.ttft_ms:.0f}", justify="right"), Text(cost, justify="right"),
            Text(marks, style=style)]


def short_level(label: str) -> str:
    """'concurrency 4' -> 'c=4'; 'rate 2/s max-concurrency 8' -> 'r=2/s c≤8'."""
    return (label.replace("concurrency ", "c=").replace("max-c=", "c≤").replace("rate ", "r=")
            .replace("burstiness ", "b=")[:14])


FRONTIER_HEADERS = ("curve", "level", "GPU tok/s", "user tok/s", "TTFT", "$/1M", "pareto")
