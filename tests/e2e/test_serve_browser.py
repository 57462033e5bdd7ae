"""`tokentop serve` in a real headless browser (Debian's chromium, driven by selenium through
Debian's chromedriver), on the real embedded engine: the page loads, the gauges show, a prompt
typed on the keyboard streams, a second tab shares the same app, and stopping serve leaves no
process behind."""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.support.serve_support import (
    ServerProcess,
    children,
    descendants,
    session_members,
    session_of,
    wait_until_gone,
)

pytestmark = [pytest.mark.engine, pytest.mark.e2e, pytest.mark.timeout(480)]

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists()), None)

# textual.js keeps its xterm.js Terminal private and draws it on a canvas, so the DOM has no text.
# Installed before the page's scripts run, this notes the Terminal when textual.js stores it (as
# `this.terminal`), so the test can read what the browser shows from xterm.js's own buffer.
CAPTURE_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active) { window.__servedTerminal = value; }
  },
});
"""
READ_SCREEN = """
const term = window.__servedTerminal;
if (!term) { return null; }
const buffer = term.buffer.active, lines = [];
for (let row = 0; row < term.rows; row++) {
  const line = buffer.getLine(buffer.viewportY + row);
  lines.push(line ? line.translateToString(true) : '');
}
return lines.join('\\n');
"""
# Opens a websocket from the page and says whether the server let it open.
WEBSOCKET_PROBE = """
const [url, done] = arguments;
const ws = new WebSocket(url);
ws.onopen = () => { ws.close(); done('open'); };
ws.onerror = () => done('refused');
"""


def capture_terminal(driver) -> None:
    """Install CAPTURE_TERMINAL in the current tab (each tab needs its own)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE_TERMINAL})


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tokentop-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1100,720", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit chromedriver: Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    capture_terminal(driver)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_screen(driver, predicate, timeout: float, what: str) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    seen = {"screen": ""}

    def check(d):
        seen["screen"] = d.execute_script(READ_SCREEN) or ""
        return seen["screen"] if predicate(seen["screen"]) else False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.3).until(check)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; the browser showed:\n{seen['screen']}") from None


def tokens_shown(screen: str) -> int:
    match = re.search(r"tokens\s+(\d+)", screen)
    return int(match.group(1)) if match else 0


def test_served_app_streams_a_typed_prompt_in_a_browser(browser, tokentop_cmd, cli_env, tmp_path,
                                                        embedded_model_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    db = tmp_path / "served.duckdb"
    server = ServerProcess([*tokentop_cmd, "serve", "--port", "0", "--db", str(db)], env=cli_env)
    try:
        url = server.url(60)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", url), url
        assert "ssh -L" in server.output

        # Without the token the browser gets neither the page nor the websocket (on loopback too).
        host = url.split("/")[2]
        browser.get(f"http://{host}/")
        assert browser.find_element(By.TAG_NAME, "body").text.startswith("tokentop serve: forbidden")
        for ws_url in (f"ws://{host}/ws?width=80&height=24", f"ws://{host}/ws/not-the-token?width=80&height=24"):
            assert browser.execute_async_script(WEBSOCKET_PROBE, ws_url) == "refused", ws_url
        assert "a browser joined" not in server.output
        # With it, the page and its websocket serve the app (below).
        browser.get(url)
        wait_screen(browser, lambda s: "TTFT" in s and "TPS (req)" in s and "tokens" in s, 60, "the gauges")
        wait_screen(browser, lambda s: "CPU" in s and "starting engine" not in s, 300, "the engine to be ready")

        browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("Name three colours.\n")
        screen = wait_screen(browser, lambda s: tokens_shown(s) > 0, 120, "tokens to stream")
        assert "The answer streams here" not in screen
        screen = wait_screen(browser, lambda s: "stored run" in s, 120, "the run to be stored")
        assert re.search(r"TTFT\s+\d+ ms", screen), screen
        # The F-keys reach the app through the browser, whatever has focus (here the prompt box).
        prompt = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        prompt.send_keys(Keys.F4)
        wait_screen(browser, lambda s: "runs 1/1" in s and "completed" in s, 30, "History (F4)")
        prompt.send_keys(Keys.F2)
        wait_screen(browser, lambda s: "TPS (req)" in s and "runs 1/" not in s, 30, "Live again (F2)")

        # A second tab joins the same app (and engine): it is shown the screen as it is.
        browser.switch_to.new_window("tab")
        capture_terminal(browser)
        browser.get(url)
        screen = wait_screen(browser, lambda s: "TPS (req)" in s and tokens_shown(s) > 0, 60, "the shared screen")
        server.wait_for_output(r"\(2 watching\)", 10)

        app_pids = descendants(server.proc.pid)
        sessions = {sid for pid in app_pids if (sid := session_of(pid)) is not None}
        assert len(children(server.proc.pid)) == 1  # one app (and its engine), not one per tab

        assert server.stop(signal.SIGINT) == 0
        assert wait_until_gone(app_pids, 20) == set(), server.output
        assert session_members(sessions) == set()
    finally:
        server.kill()

    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT r.kind, r.status, q.output_tokens, q.ttft_ms FROM runs r JOIN requests q USING (run_id)"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1, rows
    kind, status, tokens, ttft = rows[0]
    assert kind == "interactive" and status == "completed" and tokens > 0 and ttft > 0
