"""Stored text never drives the terminal (issue 17, item 2): one sanitiser (engine/terminal_text.py) for
every text that came from outside, applied where rows are read for display. A run with escape
sequences in its hostname, model, label, error, provider, device and environment, imported from a real
bundle, goes through `tokentop runs`, `show`, `compare` and `prices` (JSON keeps the text exact) and
the app's History and run detail (Pilot: no control character reaches the screen, title and rows
intact, markup shown as typed)."""

from __future__ import annotations

import json
import re
from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from data.store.database import Store
from engine.terminal_text import StreamSanitizer, safe_display, safe_text
from tests.support.transfer_support import record_run, save_prices, tokentop
from tests.support.wait import wait_for

# Anything a terminal could obey: C0 but newline and tab, DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

HOST = "HOSTX \x1b[2J\x1b[H\x1b[3J"
MODEL = "m \x1b]0;title\x07"
LABEL = "[@click=app.quit]lbl[/] \x1b]52;c;cHduZWQ=\x07\x9b2Jend"
ERROR = "boom \x1b[31mred\x1b[0m\r\x1bc\x00"
PROVIDER = "acme\x1bPq#0;2;0;0;0\x1b\\cloud"
DEVICE = "NVIDIA \x9b6nH100\x85"


# -- the one function -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, shown", [
    ("plain text\twith tab\nand newline", "plain text\twith tab\nand newline"),
    ("\x1b[31mred\x1b[0m", "red"),                                  # CSI
    ("\x1b[38;2;1;2;3mrgb", "rgb"),
    ("x\x1b]0;title\x07y", "xy"),                                    # OSC to BEL
    ("x\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\y", "xlinky"),     # OSC to ST (hyperlink)
    ("x\x1bP+q544e\x1b\\y", "xy"),                                   # DCS
    ("x\x1b_apc\x1b\\y\x1b^pm\x1b\\z\x1bXsos\x1b\\", "xyz"),         # APC, PM, SOS
    ("x\x9b2Jy\x9d0;t\x9cz", "xyz"),                                 # 8-bit CSI and OSC (C1)
    ("a\x1bcb\x1b7c\x1b(Bd", "abcd"),                                # ESC c (reset), ESC 7, ESC ( B
    ("a\rb\r\nc", "ab\nc"),                                          # CR would overwrite the line
    ("a\x00\x07\x08\x0b\x0c\x7f\x85\x9fb", "ab"),                    # lone C0, DEL, C1
    ("host\u202egnp.exe\u2066x\u2069", "hostgnp.exex"),                 # bidi override/isolates reorder text
    ("cut \x1b]0;never ends", "cut 0;never ends"),                   # unterminated: introducer gone
    ("[bold red]x[/] :smile:", "[bold red]x[/] :smile:"),            # markup is not this function's
])
def test_safe_text_removes_whole_sequences_and_controls(raw, shown):
    assert safe_text(raw) == shown
    assert not CONTROL.search(safe_text(raw))


def test_model_output_keeps_its_tab_expansion_and_split_sequences():
    assert safe_text("a\tb", tab="    ") == "a    b"
    s = StreamSanitizer()
    parts = ["hello \x1b[3", "1mred\x1b", "[0m done \x1b]8;;http://x", "\x1b\\link \x9b", "2J\x1b]0;t", "itle\x07!"]
    assert "".join(s.feed(p) for p in parts) + s.flush() == "hello red done link !"
    s = StreamSanitizer()  # a complete sequence followed by text is not held back
    assert s.feed("a\x1b]0;t\x07b") == "ab"


def test_safe_display_covers_every_string_of_a_row_and_leaves_the_original():
    @dataclass(frozen=True)
    class Row:
        name: str
        extra: dict

    Pair = namedtuple("Pair", "a b")
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    row = {"host\x1b[2J": HOST, "n": 3, "t": when, "list": [MODEL, 1.5, None], "obj": Row(LABEL, {"k": ERROR}),
           "pair": Pair(PROVIDER, 2), "set": frozenset({DEVICE})}
    out = safe_display(row)
    assert out == {"host": "HOSTX ", "n": 3, "t": when, "list": ["m ", 1.5, None],
                   "obj": Row("[@click=app.quit]lbl[/] end", {"k": "boom red"}), "pair": Pair("acmecloud", 2),
                   "set": frozenset({"NVIDIA H100"})}
    assert row["list"][0] == MODEL and row["obj"].name == LABEL  # JSON output still has the exact text


# -- a hostile imported run -------------------------------------------------------------------------
@pytest.fixture
def hostile(tmp_path, tokentop_cmd, cli_env):
    """A run with escape sequences in every text field, exported and imported: what another box sends."""
    src = tmp_path / "evil-box.duckdb"
    with Store(src) as s:
        save_prices(s)
        run_id = record_run(s, host=HOST, device=DEVICE, gpu_key="H100-SXM-80")
        with s.connection() as con:
            con.execute("UPDATE runs SET model = ?, label = ?, error = ?, provider = ?, device = ?, "
                        "environment = json_merge_patch(environment, ?) WHERE run_id = ?",
                        [MODEL, LABEL, ERROR, PROVIDER, DEVICE, json.dumps({"os": ERROR, "k\x1b[2J": HOST}), run_id])
            con.execute("UPDATE requests SET success = false, error = ? WHERE run_id = ? AND request_index = 0",
                        [ERROR, run_id])
    bundle = tmp_path / "evil.duckdb"
    tokentop(tokentop_cmd, cli_env, "export", "-o", str(bundle), "--db", str(src))
    db = tmp_path / "mine.duckdb"
    tokentop(tokentop_cmd, cli_env, "import", str(bundle), "--db", str(db))
    with Store(db) as s:
        from data.store.prices import save_fetch
        from pricing.models import FetchResult, PriceRow

        row = PriceRow(provider="runpod", gpu_key=None, gpu_raw_name="H100 \x1b[2J\x1b]0;gpu\x07", approximate=False,
                       gpu_count=1, usd_per_hour=2.0, pricing_type="on-demand", source="live",
                       fetched_at=datetime.now(timezone.utc), region="eu\x1b[5m", note="\x9b2Jnote")
        save_fetch(s, [FetchResult("runpod", rows=[row], reason="partly \x1b[31mfailed",
                                   attempted_at=datetime.now(timezone.utc))])
    return db, run_id


def assert_terminal_safe(text: str) -> None:
    bad = CONTROL.findall(text.replace("\n", ""))
    assert not bad, f"control characters reached the terminal: {bad!r}"


@pytest.mark.parametrize("command", [["runs"], ["show", "{run}"], ["compare", "{run}"], ["prices"]])
def test_cli_prints_stored_text_without_its_escape_sequences(hostile, tokentop_cmd, cli_env, command):
    db, run_id = hostile
    args = [a.format(run=run_id) for a in command]
    proc = tokentop(tokentop_cmd, {**cli_env, "COLUMNS": "200"}, *args, "--db", str(db))
    assert_terminal_safe(proc.stdout + proc.stderr)
    if command[0] in ("runs", "show"):
        assert "m " in proc.stdout and run_id in proc.stdout  # the rows are still there
        assert "NVIDIA H100" in proc.stdout
    if command[0] == "prices":
        assert "H100 " in proc.stdout and "note" in proc.stdout


def test_json_keeps_the_text_exact(hostile, tokentop_cmd, cli_env):
    db, run_id = hostile
    runs = json.loads(tokentop(tokentop_cmd, cli_env, "runs", "--json", "--db", str(db)).stdout)
    assert (runs[0]["hostname"], runs[0]["model"], runs[0]["label"]) == (HOST, MODEL, LABEL)
    shown = json.loads(tokentop(tokentop_cmd, cli_env, "show", run_id, "--json", "--db", str(db)).stdout)
    assert shown["model"] == MODEL and shown["error"] == ERROR and shown["location"]["provider"] == PROVIDER


def screen_lines(app) -> list[str]:
    """What the app paints (every widget, toasts included), as text: what the terminal receives."""
    update = app.screen._compositor.render_update(full=True)
    return ["".join(segment.text for segment in strip) for strip in update.strips]


async def test_history_and_run_detail_show_it_as_plain_text(hostile):
    from textual.widgets import DataTable

    from tui.app import TokentopApp

    db, run_id = hostile
    store = Store(db)
    app = TokentopApp(store=store, autostart=False, db_label="mine.duckdb", mode="history")
    try:
        async with app.run_test(size=(140, 40), notifications=True) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count, 30, "the history's rows")
            await wait_for(pilot, lambda: any("HOSTX" in line for line in screen_lines(app)), 30, "the run's row drawn")
            lines = screen_lines(app)
            text = "\n".join(lines)
            assert_terminal_safe(text)
            assert lines[0].startswith(" tokentop ") and "F4 History" in lines[0]  # the title bar stands
            row = next(line for line in lines if "HOSTX" in line)  # the run's row, whole
            assert "m " in row and "H100-SXM-80" in row and "completed" in row

            await pilot.press("enter")  # run detail
            await wait_for(pilot, lambda: any(run_id in line and "suite" in line for line in screen_lines(app)[:4]),
                           30, "the run detail's title")
            await wait_for(pilot, lambda: "acmecloud" in "\n".join(screen_lines(app)), 30, "the run detail's fields")
            lines = screen_lines(app)
            text = "\n".join(lines)
            assert_terminal_safe(text)
            assert lines[0].startswith(" tokentop ")
            assert any(line.strip().startswith(run_id) for line in lines[1:3]), lines[:4]  # its title
            for shown in ("HOSTX", "NVIDIA H100", "[@click=app.quit]lbl[/] end", "boom red", "acmecloud"):
                assert shown in text, shown  # every field, markup as typed (plain Text)
            assert app.is_running  # the label's [@click=app.quit] was not an action

            app.notify(f"run {run_id} failed: {ERROR}", title=MODEL, severity="error")  # server text in a notice
            await wait_for(pilot, lambda: "failed:" in "\n".join(screen_lines(app)), 30, "the notice drawn")
            text = "\n".join(screen_lines(app))
            assert_terminal_safe(text)
            assert "boom red" in text
    finally:
        store.close()
