"""One error root (issue 22 step 5): every exception class tokentop defines derives from
engine.errors.TokentopError, whose `exit_code` is the one mapping from a failure to the process's exit
status; engine.terminal_text.one_line is the one way a failure becomes one line; and a screen's worker
that fails is said in a notification, never swallowed."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from textual.app import App

from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "data", "pricing", "tui")

# The exit status each class gave before the root existed, read from the four mappings it replaced:
# tui.cli._main (UsageError 2; BadRequestError and StoreError 2; EngineError 1), tui.cli.common.
# start_engine_or_exit_code (BadRequestError 2, EngineError 1), tui.app_main.run_app and tui.cli.commands.
# serve (UsageError/BadRequestError 2, CannotListen 2), tui.cli.commands.transfer (`getattr(exc, "code",
# 2)`: BundleError 2, RemoteError its own code, 1 unless misnamed), compare (CompareError, SloError 2),
# embedded_model's __main__ (EmbeddedModelError 2), where_options (LocationError becomes a UsageError: 2).
# Classes no mapping named (caught inside and reported otherwise) are runtime failures: 1.
OLD_EXIT_CODES = {
    "engine.types.EngineError": 1,
    "engine.types.BadRequestError": 2,
    "engine.engines.host.EngineClosedError": 1,
    "engine.orchestrator.BusyError": 1,
    "engine.engines.hub.HubError": 2,
    "engine.workloads.files.DatasetFileError": 2,
    "data.fleet.spec.FleetFileError": 2,
    "data.store.database.StoreError": 2,
    "data.store.database.DatabaseLocked": 2,
    "data.store.database.IdError": 2,
    "tui.cli.common.UsageError": 2,
    "tui.cli.serve_server.CannotListen": 2,
    "data.travel.bundle.BundleError": 2,
    "data.analysis.compare.CompareError": 2,
    "data.analysis.frontier.SloError": 2,
    "engine.telemetry.environment.LocationError": 2,
    "engine.engines.embedded_model.EmbeddedModelError": 2,
    "data.travel.remote.RemoteError": 1,
    "data.travel.remote.RemoteMissing": 1,
    "pricing.http.FetchError": 1,
    "engine.engines.http1.ProtocolError": 1,
}


def project_exception_classes() -> dict[str, type]:
    """Every exception class defined in engine/, data/, pricing/ and tui/, found by importing each module."""
    found: dict[str, type] = {}
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if isinstance(obj, type):
                    pending = [obj] + [v for v in vars(obj).values() if isinstance(v, type)]  # nested too
                    for cls in pending:
                        if issubclass(cls, BaseException) and cls.__module__ == info.name:
                            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


@pytest.fixture(scope="module")
def classes() -> dict[str, type]:
    return project_exception_classes()


def test_every_project_exception_derives_from_the_root(classes):
    from engine.errors import TokentopError

    assert set(OLD_EXIT_CODES) <= set(classes), sorted(set(OLD_EXIT_CODES) - set(classes))
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, TokentopError))
    assert strays == []


def test_exit_codes_are_the_ones_the_old_mappings_gave(classes):
    from engine.errors import exit_code

    for name, code in OLD_EXIT_CODES.items():
        cls = classes[name]
        exc = cls.__new__(cls)
        Exception.__init__(exc, "x")
        assert exit_code(exc) == code, name
    # A remote that is misnamed is bad input (2); one that is unreachable is a runtime failure (1).
    from data.travel.remote import RemoteError

    assert exit_code(RemoteError("no bucket", 2)) == 2 and exit_code(RemoteError("refused")) == 1
    assert exit_code(KeyboardInterrupt()) == 130
    assert exit_code(RuntimeError("not ours")) == 1


def test_callers_that_catch_builtin_bases_still_catch():
    from data.analysis.frontier import SloError
    from data.store.database import IdError
    from engine.engines.http1 import ProtocolError
    from engine.telemetry.environment import LocationError

    assert issubclass(SloError, ValueError) and issubclass(IdError, ValueError)
    assert issubclass(LocationError, ValueError) and issubclass(ProtocolError, ConnectionError)


def test_one_line_strips_escape_sequences_and_keeps_one_line():
    from engine.terminal_text import one_line

    hostile = ValueError("\x1b]0;owned\x07bad \x1b[2Jreply\r\nTraceback (most recent call last):\n  x")
    assert one_line(hostile) == "bad reply"
    assert one_line(hostile, typed=True) == "ValueError: bad reply"
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(ValueError("\n\n  second  \nthird")) == "second"
    assert one_line(ValueError("a" * 50), limit=10) == "a" * 10
    assert one_line("a\n b\tc\x1b[31m", join=True) == "a b c"
    assert one_line("abcdef", limit=4, join=True, ellipsis=True) == "abc…"


class Host(App):
    def __init__(self, factory) -> None:
        super().__init__()
        self.factory = factory
        self.store = None

    def on_mount(self) -> None:
        self.push_screen(self.factory())


def _load_screen():
    from tui.screens.load import LoadScreen

    return LoadScreen(SimpleNamespace(store=None))


def _detail_screen():
    from tui.screens.run_detail import RunDetailScreen

    screen = RunDetailScreen("r1")
    screen._load_run = lambda: None  # no stored run: only the frontier worker runs here
    screen.run = {"run_id": "r1", "kind": "load"}
    return screen


@pytest.mark.parametrize("factory, start", [
    (_load_screen, lambda screen: screen.load_frontier(["r1"])),
    (_detail_screen, lambda screen: screen.load_frontier()),
], ids=["load", "run_detail"])
async def test_a_failed_screen_worker_is_said_in_a_notice(monkeypatch, factory, start):
    """The Load and Run detail screens' frontier workers used to swallow their failure (`except
    Exception: pass`): now the screen says it, one line, escape sequences stripped."""
    import data.analysis.frontier as frontier

    def broken(*_args, **_kwargs):
        raise RuntimeError("frontier \x1b[2Jbroke\nsecond line")

    monkeypatch.setattr(frontier, "build_frontier", broken)
    app = Host(factory)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        start(app.screen)

        def notices() -> list[str]:
            return [str(n.message) for n in app._notifications]

        await wait_for(pilot, notices, 10, "the notice")  # until it is up
        messages = notices()
        assert messages == ["RuntimeError: frontier broke"], messages
