"""A fleet's plan: one SkyPilot task per cell, checked by SkyPilot's own code, priced three ways.

Task shape (SkyPilot 0.14's task YAML, docs.skypilot.co "YAML spec"; sky/task.py from_yaml_config):
`resources.infra` names the cloud, `resources.accelerators` is "<SkyPilot name>:<count>"; `workdir` is
the local checkout (SkyPilot syncs it to ~/sky_workdir); `setup` is tokentop's own set-up
(`bash scripts/setup.sh`); `run` is one `tokentop bench|load` command under `timeout` (the cell stops
itself at the time cap even if the laptop is gone); `envs` carries TOKENTOP_REMOTE (the cell's own
prefix of the fleet's remote); `secrets` lists AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and HF_TOKEN by
name with null values: SkyPilot reads a null secret as a reference resolved at launch (`sky launch
--secret NAME` reads it from the environment; `fleet up` passes them as secrets_overrides), so no value
is ever written to a file.

Prices per cell: SkyPilot's catalog price where its catalog CSV is already on this machine
(~/.sky/catalogs/v8/<cloud>/vms.csv: SkyPilot downloads it on first use and we never do), tokentop's
price (the store's latest fetch, else the bundled dated snapshot: data.store.prices.price_board), and the cost
of the time cap at the higher of the two.
"""

from __future__ import annotations

import copy
import csv
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.fleet.spec import Cell, Fleet, FleetFileError
from engine.terminal_text import one_line

SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN")
OPTIONAL_SECRETS = ("AWS_REGION", "AWS_ENDPOINT_URL")  # passed by name when set here at plan time
REQUIRED_AT_LAUNCH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
INPUTS_DIR = "~/tokentop-inputs"
CATALOG_DIRS = {"runpod": "runpod", "vast": "vast", "lambda": "lambda"}  # Kubernetes has no price catalog
NOT_OFFLINE = "not available offline"


@dataclass
class CatalogPrice:
    """SkyPilot's catalog price for a cell's accelerator x count: USD per hour for the whole instance."""

    usd_per_hour: float | None  # cheapest on-demand
    spot_usd_per_hour: float | None
    instance_type: str | None
    note: str  # "catalog price: not available offline", "3 instance types", ...


@dataclass
class CellPlan:
    cell: Cell
    task: dict[str, Any]  # the SkyPilot task config (written as YAML)
    run: str  # the run command alone, as shown
    catalog: CatalogPrice
    tokentop_usd_per_hour: float | None
    tokentop_source: str  # live | catalog | snapshot | "none"
    estimate_usd: float | None  # for the fleet's time cap
    file: Path | None = None

    @property
    def usd_per_hour(self) -> float | None:
        """The price the estimate uses: the higher of SkyPilot's and tokentop's (an estimate should not
        be the cheaper guess)."""
        known = [p for p in (self.catalog.usd_per_hour, self.tokentop_usd_per_hour) if p is not None]
        return max(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        c = self.cell
        return {"cell": c.index, "cluster": c.cluster, "gpu": c.gpu, "gpu_key": c.gpu_key,
                "gpu_assumed": c.gpu_assumed, "provider": c.provider, "infra": c.infra,
                "accelerators": f"{c.accelerator}:{c.count}", "file": str(self.file) if self.file else None,
                "run": self.run,
                "skypilot_catalog_usd_per_hour": self.catalog.usd_per_hour,
                "skypilot_catalog_spot_usd_per_hour": self.catalog.spot_usd_per_hour,
                "skypilot_catalog_note": self.catalog.note,
                "tokentop_usd_per_hour": self.tokentop_usd_per_hour, "tokentop_price_source": self.tokentop_source,
                "estimate_usd": self.estimate_usd}


@dataclass
class FleetPlan:
    fleet: Fleet
    cells: list[CellPlan] = field(default_factory=list)
    secrets: tuple[str, ...] = SECRETS

    @property
    def estimate_usd(self) -> float | None:
        known = [c.estimate_usd for c in self.cells if c.estimate_usd is not None]
        return sum(known) if known else None

    @property
    def unpriced(self) -> int:
        return sum(1 for c in self.cells if c.estimate_usd is None)

    def to_dict(self) -> dict[str, Any]:
        f = self.fleet
        return {"fleet": f.name, "model": f.model, "remote": f.remote, "command": f.command,
                "hours": f.hours, "idle_minutes": f.idle_minutes, "spot": f.spot,
                "secrets_by_name": list(self.secrets), "estimate_usd": self.estimate_usd,
                "unpriced_cells": self.unpriced, "cells": [c.to_dict() for c in self.cells]}


def run_command(fleet: Fleet, cell: Cell) -> str:
    """The one command a cell runs, in its workdir: tokentop under `timeout` (the cap less 5 minutes of
    provisioning and set-up, at least 5 minutes; SIGINT first so tokentop stores what ran)."""
    argv = [".venv/bin/tokentop", fleet.command, "--model", fleet.model, "--provider", cell.provider]
    if cell.count > 1:
        argv += ["--tensor-parallel-size", str(cell.count)]
    if fleet.command == "bench":
        argv += ["--suite", _cell_path(fleet, "--suite", fleet.suite or "seed")]
    else:
        args = list(fleet.load_args)
        for option in ("--dataset-path", "--suite"):
            if option in args:
                i = args.index(option) + 1
                args[i] = _cell_path(fleet, option, args[i])
        argv += args
    seconds = max(300, int(fleet.hours * 3600) - 300)
    words = " ".join(w if w.startswith(INPUTS_DIR) else shlex.quote(w) for w in argv)
    return f"timeout --signal=INT --kill-after=60 {seconds} {words}"


def _cell_path(fleet: Fleet, option: str, value: str) -> str:
    local = fleet.inputs.get(option)
    return f"{INPUTS_DIR}/{local.name}" if local is not None else value


def task_config(fleet: Fleet, cell: Cell, *, workdir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The SkyPilot task for one cell (a plain dict: YAML on disk, sky.Task.from_yaml_config at launch)."""
    env = env or {}
    resources: dict[str, Any] = {"infra": cell.infra, "accelerators": f"{cell.accelerator}:{cell.count}",
                                 "disk_size": 200}
    if fleet.spot:
        resources["use_spot"] = True
    secrets: dict[str, None] = {name: None for name in SECRETS}
    secrets.update({name: None for name in OPTIONAL_SECRETS if env.get(name)})
    task: dict[str, Any] = {
        "name": cell.cluster,
        "workdir": str(workdir),
        "resources": resources,
        "envs": {"TOKENTOP_REMOTE": fleet.cell_remote(cell), "TOKENTOP_PROVIDER": cell.provider},
        "secrets": secrets,
        "setup": "bash scripts/setup.sh",
        "run": run_command(fleet, cell),
    }
    if fleet.inputs:
        task["file_mounts"] = {f"{INPUTS_DIR}/{p.name}": str(p) for p in fleet.inputs.values()}
    return task


def validate_task(config: dict[str, Any]):
    """Build the task with SkyPilot's own code (sky.Task.from_yaml_config, validate_name, validate_run)
    and check the cluster name with its rule; returns the sky.Task. Any refusal -> FleetFileError."""
    try:
        import sky
        from sky.utils import common_utils
    except ImportError:
        raise FleetFileError("SkyPilot is not installed: pip install 'tokentop[fleet]'") from None
    try:
        task = sky.Task.from_yaml_config(copy.deepcopy(config))
        task.validate_name()
        task.validate_run()
        common_utils.check_cluster_name_is_valid(config["name"])
    except Exception as exc:  # SkyPilot raises ValueError, InvalidClusterNameError, jsonschema errors...
        raise FleetFileError(f"SkyPilot refuses the task for {config.get('name')}: "
                             f"{one_line(exc)}") from None
    return task


def catalog_price(cell: Cell, catalog_root: Path | None = None) -> CatalogPrice:
    """SkyPilot's catalog price offline: its vms.csv for the cloud if SkyPilot has already downloaded it
    (never downloaded here). The CSV is outside input: rows with bad numbers are skipped."""
    cloud = CATALOG_DIRS.get(cell.infra)
    if cloud is None:
        return CatalogPrice(None, None, None, "catalog price: none (Kubernetes: your own cluster)")
    path = (catalog_root / cloud / "vms.csv") if catalog_root else _sky_catalog_path(f"{cloud}/vms.csv")
    if path is None or not path.is_file():
        return CatalogPrice(None, None, None, f"catalog price: {NOT_OFFLINE}")
    from pricing.gpus import GPUS

    want_gb = GPUS[cell.gpu_key].memory_gb if cell.gpu_key in GPUS else None
    best: tuple[float, str] | None = None
    best_spot: float | None = None
    types: set[str] = set()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                if (rec.get("AcceleratorName") or "").lower() != cell.accelerator.lower():
                    continue
                try:
                    if float(rec.get("AcceleratorCount") or "nan") != cell.count:
                        continue
                    price = float(rec.get("Price") or "nan")
                except ValueError:
                    continue
                per_gpu = _gpu_memory_gb(rec.get("GpuInfo"), cell.count)
                if want_gb and per_gpu is not None and abs(per_gpu - want_gb) / want_gb > 0.1:
                    continue  # Vast.ai's "A100" rows are 40 and 80 GB cards, its "RTX4090" 24 and 48 GB
                if not (math.isfinite(price) and price > 0):
                    continue
                name = rec.get("InstanceType") or "?"
                types.add(name)
                if best is None or price < best[0]:
                    best = (price, name)
                try:
                    spot = float(rec.get("SpotPrice") or "nan")
                except ValueError:
                    spot = math.nan
                if math.isfinite(spot) and spot > 0 and (best_spot is None or spot < best_spot):
                    best_spot = spot
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return CatalogPrice(None, None, None, f"catalog price: unreadable ({type(exc).__name__})")
    if best is None:
        return CatalogPrice(None, None, None, f"catalog price: no {cell.accelerator}:{cell.count} in "
                                              f"SkyPilot's {cloud} catalog")
    return CatalogPrice(best[0], best_spot, best[1], f"SkyPilot catalog, {len(types)} instance type(s)")


def _gpu_memory_gb(gpu_info: str | None, count: int) -> float | None:
    """Per-GPU memory from a catalog row's GpuInfo: TotalGpuMemoryInMiB / AcceleratorCount (Vast.ai's
    per-GPU 'SizeInMiB' is the offer's total, RunPod's is per GPU). RunPod's catalog writes GB in the
    MiB fields ('SizeInMiB': 80 for an A100-80GB): a figure under 1024 is read as GB."""
    import re

    m = re.search(r"'TotalGpuMemoryInMiB':\s*([0-9.]+)", gpu_info or "")
    if not m or count < 1:
        return None
    total = float(m.group(1))
    per_gpu = total / count
    return per_gpu if total < 1024 * count and per_gpu < 1024 else per_gpu / 1024


def _sky_catalog_path(filename: str) -> Path | None:
    try:
        from sky.catalog import common
    except ImportError:
        return None
    return Path(common.get_catalog_path(filename))


def tokentop_price(board, cell: Cell) -> tuple[float | None, str]:
    """tokentop's price for the cell from a PriceBoard (stored fetch, else the bundled snapshot)."""
    from data.analysis.matrix import board_price

    price = board_price(board, cell.provider, cell.gpu_key, cell.count) if board is not None else None
    return (price.usd_per_hour, price.source) if price else (None, "none")


def make_plan(fleet: Fleet, *, workdir: Path, board=None, env: dict[str, str] | None = None,
              catalog_root: Path | None = None, validate: bool = True) -> FleetPlan:
    """Every cell's task (checked by SkyPilot's code when `validate`) and prices."""
    plan = FleetPlan(fleet=fleet)
    names = set(SECRETS)
    for cell in fleet.cells:
        task = task_config(fleet, cell, workdir=workdir, env=env)
        names |= set(task["secrets"])
        if validate:
            validate_task(task)
        catalog = catalog_price(cell, catalog_root)
        tt, source = tokentop_price(board, cell)
        cp = CellPlan(cell=cell, task=task, run=task["run"], catalog=catalog, tokentop_usd_per_hour=tt,
                      tokentop_source=source, estimate_usd=None)
        if cp.usd_per_hour is not None:
            cp.estimate_usd = cp.usd_per_hour * fleet.hours
        plan.cells.append(cp)
    plan.secrets = tuple(n for n in (*SECRETS, *OPTIONAL_SECRETS) if n in names)
    return plan


def write_plan(plan: FleetPlan, out: Path) -> list[Path]:
    """One YAML file per cell in `out` (<cluster>.yaml), created if missing. Returns the paths."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for cp in plan.cells:
        p = out / f"{cp.cell.cluster}.yaml"
        header = (f"# tokentop fleet {plan.fleet.name}, cell {cp.cell.index}: {cp.cell.label}\n"
                  f"# launch by hand: sky launch {p.name} -c {cp.cell.cluster} --down "
                  + " ".join(f"--secret {n}" for n in plan.secrets) + "\n")
        p.write_text(header + yaml.safe_dump(cp.task, sort_keys=False, default_flow_style=False), encoding="utf-8")
        cp.file = p
        paths.append(p)
    return paths
