"""The fleet file: one TOML file naming the model, the workload, the remote and one `[[cell]]` per
GPU x provider row of the article's table.

    name = "article"                      # optional; default: the file's stem
    model = "meta-llama/Meta-Llama-3-8B-Instruct"
    remote = "s3://my-bucket/tokentop"    # every cell pushes its runs under <remote>/fleet/<name>/<cell>
    suite = "seed"                        # `tokentop bench --suite`, or a [load] table (not both)
    hours = 1.5                           # time cap per cell, launch to teardown (default 1)
    idle-minutes = 10                     # SkyPilot's autostop (down) if the laptop goes away (default 10)
    spot = false                          # ask SkyPilot for spot instances (default false)

    [load]                                # `tokentop load`'s options, without the dashes
    concurrency = "1,2,4"
    dataset-name = "random"
    input-len = 512

    [[cell]]
    gpu = "H100"                          # tokentop's GPU names (pricing.gpus.canonical_gpu)
    provider = "runpod"                   # runpod | vastai | lambda | coreweave
    count = 1                             # GPUs per cell (default 1)

The file is the user's input: every problem is one FleetFileError line (exit 2). The [load] table is
checked by the caller's `load_check` (the `load` command's own parser and validator; see
tui/cli/commands/fleet.py), so the rules live in one place.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.types import BadRequestError
from pricing.gpus import canonical_gpu, gpu_label


class FleetFileError(BadRequestError):
    """A fleet file that cannot be used: one line saying what to change (exit 2)."""


# tokentop's provider names -> SkyPilot's infra names (sky/clouds/*.py; CoreWeave's CKS is Kubernetes).
SKY_INFRA = {"runpod": "runpod", "vastai": "vast", "lambda": "lambda", "coreweave": "kubernetes"}
REFUSED_PROVIDERS = {
    "vultr": "SkyPilot has no Vultr: rent it by hand (tokentop bench --provider vultr on the box) or use "
             "dstack, which has",
}

# Canonical GPU key -> SkyPilot's accelerator name on each infra. SkyPilot's names differ per cloud: its
# catalog fetchers (sky/catalog/data_fetchers/fetch_runpod.py, fetch_vast.py, fetch_lambda_cloud.py in
# skypilot 0.14) name RunPod's PCIe H100 "H100" and the SXM one "H100-SXM", Lambda's every H100 "H100",
# and Vast.ai's by the offer's gpu_name with the form factor cut off ("H100 SXM" -> "H100"). Offline
# validation (Task.from_yaml_config) passes unknown names, so this table is the check.
_ANY = ("runpod", "vast", "lambda", "kubernetes")
SKY_ACCELERATORS: dict[str, dict[str, str]] = {
    "H100-SXM-80": {"runpod": "H100-SXM", "vast": "H100", "lambda": "H100", "kubernetes": "H100"},
    "H100-PCIE-80": {"runpod": "H100", "vast": "H100", "lambda": "H100", "kubernetes": "H100"},
    "H100-NVL-94": {"runpod": "H100-NVL", "vast": "H100", "kubernetes": "H100"},
    "H200-SXM-141": {"runpod": "H200-SXM", "vast": "H200", "kubernetes": "H200"},
    "B200-180": {"runpod": "B200", "vast": "B200", "lambda": "B200", "kubernetes": "B200"},
    "GH200-96": {"lambda": "GH200", "kubernetes": "GH200"},
    "A100-SXM-80": {"runpod": "A100-80GB-SXM", "vast": "A100", "lambda": "A100-80GB", "kubernetes": "A100-80GB"},
    "A100-PCIE-80": {"runpod": "A100-80GB", "vast": "A100", "lambda": "A100-80GB", "kubernetes": "A100-80GB"},
    "A100-SXM-40": {"vast": "A100", "lambda": "A100", "kubernetes": "A100"},
    "A100-PCIE-40": {"vast": "A100", "lambda": "A100", "kubernetes": "A100"},
    "L40S-48": {k: "L40S" for k in ("runpod", "vast", "kubernetes")},
    "L40-48": {k: "L40" for k in ("runpod", "vast", "kubernetes")},
    "L4-24": {k: "L4" for k in ("runpod", "vast", "kubernetes")},
    "A40-48": {k: "A40" for k in ("runpod", "vast", "kubernetes")},
    "A10-24": {"lambda": "A10", "vast": "A10", "kubernetes": "A10"},
    "A6000-48": {"runpod": "RTXA6000", "vast": "RTXA6000", "lambda": "A6000", "kubernetes": "A6000"},
    "RTX6000ADA-48": {"runpod": "RTX6000-Ada", "vast": "RTX6000-Ada", "kubernetes": "RTX6000-Ada"},
    "RTXPRO6000-96": {"runpod": "RTXPRO6000", "vast": "RTXPRO6000", "kubernetes": "RTXPRO6000"},
    "RTX5090-32": {k: "RTX5090" for k in ("runpod", "vast", "kubernetes")},
    "RTX4090-24": {k: "RTX4090" for k in ("runpod", "vast", "kubernetes")},
    "RTX3090-24": {k: "RTX3090" for k in ("runpod", "vast", "kubernetes")},
    "MI300X-192": {"runpod": "MI300X", "kubernetes": "MI300X"},
}

TOP_KEYS = ("name", "model", "remote", "suite", "load", "hours", "idle-minutes", "spot", "cell")
CELL_KEYS = ("gpu", "provider", "count")
DEFAULT_HOURS = 1.0
DEFAULT_IDLE_MINUTES = 10


@dataclass(frozen=True)
class Cell:
    """One row of the table: a GPU on a provider. `cluster` is the SkyPilot cluster's name (stable for a
    fleet file, so `fleet down` finds what `fleet up` started)."""

    index: int  # 1-based, in file order
    gpu: str  # as the user wrote it
    gpu_key: str  # canonical key (pricing.gpus)
    gpu_assumed: bool  # the name left out the form factor or memory (canonical_gpu's approximate)
    provider: str  # tokentop's name
    infra: str  # SkyPilot's
    accelerator: str  # SkyPilot's accelerator name on that infra
    count: int
    cluster: str

    @property
    def label(self) -> str:
        from pricing.models import provider_label

        return f"{gpu_label(self.gpu_key)} on {provider_label(self.provider)}"


@dataclass
class Fleet:
    """A parsed, checked fleet file."""

    name: str
    path: Path
    model: str
    remote: str  # s3://bucket/prefix, as written (no trailing slash)
    suite: str | None
    load_args: list[str]  # `tokentop load` argv from the [load] table; [] for a suite run
    hours: float
    idle_minutes: int
    spot: bool
    cells: list[Cell] = field(default_factory=list)
    inputs: dict[str, Path] = field(default_factory=dict)  # local files the cells need (suite, dataset)

    @property
    def command(self) -> str:
        return "load" if self.load_args else "bench"

    def cell_remote(self, cell: Cell) -> str:
        """Where one cell pushes: its own prefix under the fleet's remote, so each cell's runs are known."""
        return f"{self.remote}/fleet/{self.name}/{cell.cluster}"


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def cluster_name(fleet: str, index: int, provider: str, gpu_key: str) -> str:
    """'tt-article-1-runpod-h100-sxm-80': lowercase letters, digits and hyphens, starting with a letter
    (SkyPilot's rule, sky/utils/common_utils.check_cluster_name_is_valid), at most 40 characters."""
    tail = f"-{index}-{_slug(provider)}-{_slug(gpu_key)}"
    head = ("tt-" + _slug(fleet))[: 40 - len(tail)].rstrip("-")
    return head + tail


def _where(path: Path, what: str) -> str:
    return f"{path.name}: {what}"


def load_fleet(path: str | Path, *, load_check: Callable[[list[str]], None] | None = None) -> Fleet:
    """Read and check a fleet file. `load_check(argv)` validates the [load] table as `tokentop load`
    would (raising BadRequestError); the suite and dataset files named must exist here, since the
    cells get copies of them. Raises FleetFileError (one line) for anything wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FleetFileError(f"no fleet file {str(path)!r}") from None
    except OSError as exc:
        raise FleetFileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise FleetFileError(_where(path, "not UTF-8 text (a fleet file is TOML)")) from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(_where(path, f"not valid TOML ({exc})")) from None
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise FleetFileError(_where(path, f"unknown key {unknown[0]!r} (known: {', '.join(TOP_KEYS)})"))

    def text(key: str, required: bool = True) -> str | None:
        value = doc.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise FleetFileError(_where(path, f"{key!r} must be a non-empty string" if key in doc
                                        else f"{key!r} is missing"))
        return value.strip()

    model = text("model")
    remote = text("remote").rstrip("/")
    if not remote.startswith("s3://") or len(remote) <= len("s3://") or remote[5] == "/":
        raise FleetFileError(_where(path, f"remote must be s3://BUCKET/PREFIX, which every cell can reach "
                                    f"(got {remote!r})"))
    name = _slug(text("name", required=False) or path.stem) or "fleet"
    hours = doc.get("hours", DEFAULT_HOURS)
    if (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours)
            or not 0 < hours <= 72):
        raise FleetFileError(_where(path, f"hours must be a number above 0 and at most 72 (got {hours!r})"))
    idle = doc.get("idle-minutes", DEFAULT_IDLE_MINUTES)
    if isinstance(idle, bool) or not isinstance(idle, int) or not 1 <= idle <= 1440:
        raise FleetFileError(_where(path, f"idle-minutes must be a whole number from 1 to 1440 (got {idle!r})"))
    spot = doc.get("spot", False)
    if not isinstance(spot, bool):
        raise FleetFileError(_where(path, f"spot must be true or false (got {spot!r})"))

    suite = text("suite", required=False)
    load = doc.get("load")
    if load is not None and not isinstance(load, dict):
        raise FleetFileError(_where(path, "load must be a table ([load]) of `tokentop load` options"))
    if suite is None and load is None:
        raise FleetFileError(_where(path, "give a suite (suite = \"seed\") or a [load] table"))
    if suite is not None and load is not None:
        raise FleetFileError(_where(path, "give a suite or a [load] table, not both (a [load] table may "
                                    "name its own suite)"))
    base = path.parent
    inputs: dict[str, Path] = {}
    load_args: list[str] = []
    if load is not None:
        load_args = _load_argv(path, load)
        if load_check is not None:
            try:
                load_check(_with_local_paths(load_args, base))
            except BadRequestError as exc:
                raise FleetFileError(_where(path, f"[load]: {exc}")) from None
        for option in ("--dataset-path", "--suite"):
            if option in load_args:
                local = _local_input(path, load_args[load_args.index(option) + 1], base,
                                     required=option == "--dataset-path")  # a suite may be a bundled name
                if local is not None:
                    inputs[option] = local
    elif suite is not None:
        local = _local_input(path, suite, base, required=False)
        if local is not None:
            inputs["--suite"] = local
        else:
            from data.paths import bundled_suite_path

            if bundled_suite_path(suite) is None:
                raise FleetFileError(_where(path, f"suite {suite!r} is neither a bundled suite nor a file"))

    cells_raw = doc.get("cell")
    if not isinstance(cells_raw, list) or not cells_raw:
        raise FleetFileError(_where(path, "no cells: add one [[cell]] with gpu and provider per row"))
    cells = [_cell(path, name, i, c) for i, c in enumerate(cells_raw, 1)]
    seen: dict[tuple, int] = {}
    for c in cells:
        key = (c.gpu_key, c.provider, c.count)
        if key in seen:
            raise FleetFileError(_where(path, f"cell {c.index} repeats cell {seen[key]} ({c.label})"))
        seen[key] = c.index
    return Fleet(name=name, path=path, model=model, remote=remote, suite=suite, load_args=load_args,
                 hours=float(hours), idle_minutes=idle, spot=spot, cells=cells, inputs=inputs)


def _load_argv(path: Path, table: dict) -> list[str]:
    """[load] keys as `tokentop load` options: concurrency = "1,2,4" -> --concurrency 1,2,4; true -> a
    flag; a list -> its items joined with commas (concurrency = [1, 2, 4])."""
    argv: list[str] = []
    for key, value in table.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", key):
            raise FleetFileError(_where(path, f"[load] key {key!r} is not an option name"))
        if key.replace("_", "-") in ("model", "engine", "endpoint", "provider", "db", "json"):
            raise FleetFileError(_where(path, f"[load] key {key!r}: the fleet sets it for every cell"))
        option = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(option)
        elif isinstance(value, (int, float, str)):
            argv += [option, str(value)]
        elif isinstance(value, list) and value and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                                       for v in value):
            argv += [option, ",".join(str(v) for v in value)]
        else:
            raise FleetFileError(_where(path, f"[load] {key} must be a string, a number, true/false or a list "
                                        f"(got {type(value).__name__})"))
    return argv


def _with_local_paths(argv: Sequence[str], base: Path) -> list[str]:
    out = list(argv)
    for option in ("--dataset-path", "--suite"):
        if option in out and out.index(option) + 1 < len(out):
            i = out.index(option) + 1
            candidate = (base / out[i]).expanduser()
            if candidate.is_file():
                out[i] = str(candidate)
    return out


def _local_input(path: Path, value: str, base: Path, *, required: bool) -> Path | None:
    candidate = (base / value).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    if required:
        raise FleetFileError(_where(path, f"no file {value!r} (relative to the fleet file's folder)"))
    return None


def _cell(path: Path, fleet: str, index: int, raw: object) -> Cell:
    where = f"cell {index}"
    if not isinstance(raw, dict):
        raise FleetFileError(_where(path, f"{where} must be a table ([[cell]])"))
    unknown = [k for k in raw if k not in CELL_KEYS]
    if unknown:
        raise FleetFileError(_where(path, f"{where}: unknown key {unknown[0]!r} (known: {', '.join(CELL_KEYS)})"))
    gpu, provider = raw.get("gpu"), raw.get("provider")
    if not isinstance(gpu, str) or not gpu.strip():
        raise FleetFileError(_where(path, f"{where}: gpu is missing (e.g. gpu = \"H100\")"))
    if not isinstance(provider, str) or not provider.strip():
        raise FleetFileError(_where(path, f"{where}: provider is missing ({', '.join(SKY_INFRA)})"))
    provider = provider.strip().lower().replace(".", "").replace("vast-ai", "vastai")
    provider = {"vast": "vastai"}.get(provider, provider)
    if provider in REFUSED_PROVIDERS:
        raise FleetFileError(_where(path, f"{where}: {REFUSED_PROVIDERS[provider]}"))
    if provider not in SKY_INFRA:
        raise FleetFileError(_where(path, f"{where}: provider {provider!r} unknown (fleet providers: "
                                    f"{', '.join(SKY_INFRA)})"))
    count = raw.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 8:
        raise FleetFileError(_where(path, f"{where}: count must be a whole number from 1 to 8 (got {count!r})"))
    match = canonical_gpu(gpu.strip())
    if match.key is None:
        raise FleetFileError(_where(path, f"{where}: GPU {gpu!r} unknown (e.g. H100, H100-PCIe, A100-80GB, "
                                    "RTX4090, L40S; see tokentop prices)"))
    infra = SKY_INFRA[provider]
    accelerator = SKY_ACCELERATORS.get(match.key, {}).get(infra)
    if accelerator is None:
        from pricing.models import provider_label

        raise FleetFileError(_where(path, f"{where}: SkyPilot does not rent {gpu_label(match.key)} on "
                                    f"{provider_label(provider)}: pick another provider for it"))
    return Cell(index=index, gpu=gpu.strip(), gpu_key=match.key, gpu_assumed=match.approximate,
                provider=provider, infra=infra, accelerator=accelerator, count=count,
                cluster=cluster_name(fleet, index, provider, match.key))
