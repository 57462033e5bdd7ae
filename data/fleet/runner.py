"""`fleet up`'s follower: launch every cell, follow them, pull each cell's runs as they land, and tear
every cluster down when its cell ends, fails, passes the time cap, or the user presses Ctrl-C.

One thread does everything (launcher calls, pulls, the clock), so a KeyboardInterrupt lands in one
place: the `finally` below downs every cluster still up before it propagates. SkyPilot's own autostop
(`down=True`, idle minutes) and the `timeout` in each cell's run command are the belt to these braces
when the laptop itself goes away.

The price the launcher chose (the cluster handle's instance type, spot or not, the catalog's $/h) is
stored with the cell's runs as the price paid (runs.price_per_hour_usd, runs.instance_type) and, with
the plan's figures, under environment.fleet; a price that differs from tokentop's price for the cell by
more than FLAG_RATIO is flagged there and in the cell's line.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data.fleet.launcher import (
    FAILED,
    PROVISIONING,
    RUNNING,
    SETTING_UP,
    SUCCEEDED,
    Launched,
    Launcher,
    Progress,
)
from data.fleet.plan import CellPlan, FleetPlan
from engine.terminal_text import one_line

PUSHED = "pushed"  # the cell's runs are here
DOWN = "down"
FLAG_RATIO = 0.10
POLL_S = 15.0
POLL_TRIES = 3  # polls of one cell failing in a row before the cell counts as failed

# Why a cell ended.
ENDED_OK = "done"
ENDED_FAILED = "failed"
ENDED_CAP = "time cap"
ENDED_INTERRUPTED = "interrupted"


@dataclass
class CellRun:
    """One cell as followed: its state, what the launcher chose, the runs pulled from it."""

    plan: CellPlan
    state: str = "waiting"
    detail: str = ""
    launched: Launched | None = None
    run_ids: list[str] = field(default_factory=list)
    ended: str | None = None  # done | failed | time cap | interrupted
    down: bool = False
    down_error: str | None = None
    paid_usd_per_hour: float | None = None
    paid_source: str | None = None  # "launcher" | "plan"
    flagged: bool = False

    @property
    def cluster(self) -> str:
        return self.plan.cell.cluster

    def to_dict(self) -> dict[str, Any]:
        launched = self.launched
        return {"cell": self.plan.cell.index, "cluster": self.cluster, "state": self.state, "detail": self.detail,
                "ended": self.ended, "down": self.down, "down_error": self.down_error, "runs": self.run_ids,
                "instance_type": launched.instance_type if launched else None,
                "spot": launched.spot if launched else None,
                "paid_usd_per_hour": self.paid_usd_per_hour, "paid_source": self.paid_source,
                "tokentop_usd_per_hour": self.plan.tokentop_usd_per_hour, "price_flagged": self.flagged}


@dataclass
class FleetOutcome:
    cells: list[CellRun]
    interrupted: bool = False
    capped: bool = False

    @property
    def run_ids(self) -> list[str]:
        return [r for c in self.cells for r in c.run_ids]

    @property
    def left_up(self) -> list[str]:
        return [c.cluster for c in self.cells if not c.down]

    def to_dict(self) -> dict[str, Any]:
        return {"interrupted": self.interrupted, "time_cap_reached": self.capped, "left_up": self.left_up,
                "runs": self.run_ids, "cells": [c.to_dict() for c in self.cells]}


def follow_fleet(plan: FleetPlan, launcher: Launcher, store, *, secrets: dict[str, str],
                 on_change: Callable[[list[CellRun]], None] | None = None,
                 note: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], None] | None = None,
                 pull: Callable[[Any, str], Any] | None = None,
                 poll_s: float = POLL_S) -> FleetOutcome:
    """Launch every cell of `plan`, follow them to the end, pull their runs into `store`, down every
    cluster. `secrets` are the values of plan.secrets from the launcher's environment (never written).
    `clock`/`wait` are time.monotonic and a sleep by default (tests pass a fake clock). KeyboardInterrupt
    propagates after every cluster is down (outcome.interrupted is set on the object passed to on_change)."""
    from data.travel.remote import RemoteError
    from data.travel.remote import pull as remote_pull

    pull = pull or remote_pull
    note = note or (lambda line: None)
    stop = threading.Event()
    wait = wait or (lambda s: stop.wait(s))
    cells = [CellRun(cp) for cp in plan.cells]
    outcome = FleetOutcome(cells)
    changed = on_change or (lambda cells: None)
    cap_s = plan.fleet.hours * 3600.0
    start = clock()

    def pull_cell(c: CellRun) -> None:
        try:
            result = pull(store, plan.fleet.cell_remote(c.plan.cell))
        except RemoteError as exc:
            note(f"cell {c.plan.cell.index}: pull failed ({exc}); tried again at the next poll")
            return
        for run_id, why in getattr(result, "refused", {}).items():
            note(f"cell {c.plan.cell.index}: run {run_id} refused: {why}")
        new = [r for r in result.pulled if r not in c.run_ids]
        if new:
            c.run_ids += new
            _store_price_paid(store, plan.fleet.name, c, new, note)
            c.detail = f"{len(c.run_ids)} run(s) pulled"
            changed(cells)

    def teardown(c: CellRun, why: str) -> None:
        if c.down:
            return
        c.ended = c.ended or why
        try:
            launcher.down(c.cluster)
            c.down = True
            c.state = DOWN
        except Exception as exc:  # a cloud refusing: say so, `fleet down` retries
            c.down_error = one_line(exc, typed=True)
            note(f"cell {c.plan.cell.index}: teardown of {c.cluster} failed ({c.down_error}): "
                 f"run `tokentop fleet down {plan.fleet.path}`")
        changed(cells)

    try:
        for c in cells:
            try:
                launcher.launch(c.cluster, c.plan.task, secrets=secrets, idle_minutes=plan.fleet.idle_minutes)
                c.state = PROVISIONING
            except Exception as exc:  # SkyPilot refusing this cell (no such cloud enabled, ...)
                c.state, c.ended, c.detail = FAILED, ENDED_FAILED, one_line(exc, typed=True)
                teardown(c, ENDED_FAILED)
            changed(cells)
        errors: dict[str, int] = {}
        while True:
            for c in cells:
                if c.ended:
                    continue
                try:
                    progress = launcher.poll(c.cluster)
                    errors.pop(c.cluster, None)
                except Exception as exc:  # SkyPilot's API server unreachable, ...: tried again, then given up
                    errors[c.cluster] = errors.get(c.cluster, 0) + 1
                    if errors[c.cluster] < POLL_TRIES:
                        note(f"cell {c.plan.cell.index}: {one_line(exc, typed=True)}; asking again")
                        continue
                    progress = Progress(FAILED, f"{POLL_TRIES} polls failed: {one_line(exc, typed=True)}")
                if progress.launched is not None and c.launched is None:
                    c.launched = progress.launched
                if progress.state != c.state or progress.detail != c.detail:
                    c.state, c.detail = progress.state, progress.detail
                    changed(cells)
                if progress.state in (RUNNING, SUCCEEDED, FAILED, SETTING_UP):
                    pull_cell(c)
                if progress.state in (SUCCEEDED, FAILED):
                    c.ended = ENDED_OK if progress.state == SUCCEEDED else ENDED_FAILED
                    if progress.state == FAILED:
                        c.detail = progress.detail
                    elif c.run_ids:
                        c.state = PUSHED  # the job is done and its runs are here
                        changed(cells)
                    teardown(c, c.ended)
            if all(c.ended for c in cells):
                break
            if clock() - start >= cap_s:
                outcome.capped = True
                for c in cells:
                    if not c.ended:
                        pull_cell(c)  # what finished before the cap is kept
                        teardown(c, ENDED_CAP)
                break
            wait(poll_s)
    except KeyboardInterrupt:
        outcome.interrupted = True
        raise
    finally:
        for c in cells:
            if not c.down:
                why = ENDED_INTERRUPTED if outcome.interrupted else (c.ended or ENDED_FAILED)
                for _attempt in range(2):  # a second Ctrl-C during teardown does not leave a box up
                    try:
                        teardown(c, why)
                        break
                    except KeyboardInterrupt:
                        note(f"still tearing down {c.cluster}")
    return outcome


def _store_price_paid(store, fleet: str, c: CellRun, run_ids: list[str], note: Callable[[str], None]) -> None:
    """The launcher's price as the runs' price paid (else the plan's, marked so); flag > 10 % off
    tokentop's price for the cell."""
    plan = c.plan
    launched = c.launched
    if launched is not None and launched.usd_per_hour is not None:
        paid, source = launched.usd_per_hour, "launcher"
    else:
        paid, source = plan.usd_per_hour, "plan"
    c.paid_usd_per_hour, c.paid_source = paid, source
    tt = plan.tokentop_usd_per_hour
    c.flagged = bool(paid is not None and tt and abs(paid - tt) / tt > FLAG_RATIO)
    facts = {"fleet": {
        "fleet": fleet, "cell": plan.cell.index, "cluster": plan.cell.cluster,
        "price_paid_usd_per_hour": paid, "price_paid_source": source,
        "instance_type": launched.instance_type if launched else None,
        "spot": launched.spot if launched else None,
        "region": launched.region if launched else None,
        "skypilot_catalog_usd_per_hour": plan.catalog.usd_per_hour,
        "tokentop_usd_per_hour": tt, "tokentop_price_source": plan.tokentop_source,
        "price_flagged": c.flagged,
    }}
    with store.connection() as con:
        for run_id in run_ids:
            con.execute(
                "UPDATE runs SET price_per_hour_usd = coalesce(?, price_per_hour_usd), "
                "instance_type = coalesce(?, instance_type), region = coalesce(?, region), "
                "environment = json_merge_patch(coalesce(environment, '{}'::JSON), ?::JSON) WHERE run_id = ?",
                [paid, launched.instance_type if launched else None, launched.region if launched else None,
                 json.dumps(facts), run_id])
    if c.flagged:
        note(f"cell {plan.cell.index} paid ${paid:.2f}/h, {abs(paid - tt) / tt:.0%} "
             f"{'over' if paid > tt else 'under'} tokentop's ${tt:.2f} ({plan.tokentop_source})")
