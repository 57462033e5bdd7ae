"""Workloads: where a run's requests come from — suites, synthetic prompts (random, prefix_repetition),
datasets (ShareGPT, custom JSONL), timed traces (timed_trace, mooncake_trace) and multi-turn
conversations. Every one is a source of GenerationRequests with send times (engine.workloads.base),
driven by the one load runner; none is a driver of its own.

`WorkloadOptions` holds the user's choices under `vllm bench serve`'s option names (the `load`
command's options, the app's Load form and a suite file's [dataset] table all fill it), and
`make_workload` checks them and builds the workload (BadRequestError: one line, exit 2). Neither names
a family: the families and their options are declared in their own modules and found by
engine.workloads.registry, so a new option or a new family is an edit of its module only.
"""

from __future__ import annotations

from typing import Any

from engine.types import BadRequestError
from engine.workloads.base import FollowUp, LevelSource, Planned, Workload, workload_key

__all__ = ["FollowUp", "LevelSource", "Planned", "Workload", "WorkloadOptions", "make_workload", "workload_key"]

# The names every workload shares, with their defaults (a suite file may also set its temperature).
SHARED: dict[str, Any] = {"dataset_name": None, "dataset_path": None, "input_len": None, "output_len": None,
                          "seed": 0, "temperature": None}


def _names() -> dict[str, Any]:
    """Every name WorkloadOptions takes, with its default: the shared ones, then each declared option the
    parser puts in the workload's options (Option.workload; engine.workloads.options)."""
    from engine.workloads.options import load_options

    out = dict(SHARED)
    for opt in load_options():
        if opt.workload:
            out.setdefault(opt.dest, opt.default)
    return out


def _given(value: Any) -> bool:
    return value is not None and value is not False


class WorkloadOptions:
    """The workload options of `tokentop load` (vLLM's names, as dests: `random_prefix_len`): a mapping
    of declared name -> typed value in `values`, read as attributes. A name not given reads as its
    declaration's default (None, False for a flag; seed 0). The names are SHARED plus every declared
    option with `workload=True`, so a family's new option needs no edit here; an undeclared name is a
    TypeError when built and an AttributeError when read or set."""

    values: dict[str, Any]

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(_names()))
        if unknown:
            raise TypeError(f"WorkloadOptions: no declared option {', '.join(unknown)}")
        object.__setattr__(self, "values", dict(values))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "values":
            raise AttributeError(name)
        names = _names()
        if name not in names:
            raise AttributeError(f"WorkloadOptions has no option {name!r}")
        return self.values.get(name, names[name])

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _names():
            raise AttributeError(f"WorkloadOptions has no option {name!r}")
        self.values[name] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkloadOptions):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return "WorkloadOptions(" + ", ".join(f"{k}={v!r}" for k, v in self.values.items()) + ")"

    def as_dict(self) -> dict[str, Any]:
        """Every name with its value (the default where not given)."""
        return {name: self.values.get(name, default) for name, default in _names().items()}

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "") -> "WorkloadOptions":
        """From a suite file's [dataset] table (keys as the options, '-' or '_'; `name`/`path` short for
        dataset_name/dataset_path). Unknown keys are an error naming them."""
        known = _names()
        out: dict[str, Any] = {}
        for key, value in data.items():
            k = str(key).replace("-", "_")
            k = {"name": "dataset_name", "path": "dataset_path"}.get(k, k)
            if k not in known:
                raise BadRequestError(
                    f"{where}[dataset]: unknown key {key!r} (see `tokentop load --help` for the names)")
            out[k] = value
        return cls(**out)


def make_workload(opts: WorkloadOptions, *, suite: Any = None, base_dir: str | None = None) -> Workload:
    """Check the options and build the workload (its file is checked too: `Workload.check`). `suite`: a
    Suite whose prompts are cycled (`--suite`); `base_dir`: where a relative dataset path is found (a
    suite file's folder). The rules come from the declarations: an option given for a workload not in
    its `workloads` is refused (its `refusal`), one whose `needs` is not given too; then the chosen
    family (engine.workloads.registry) builds it. BadRequestError: one line naming the option."""
    from engine.workloads.options import load_options, option
    from engine.workloads.registry import dataset_names, family, file_datasets
    from engine.workloads.synthetic import SuiteWorkload

    names = dataset_names()
    name = opts.dataset_name or names[0]
    if name not in names:
        raise BadRequestError(f"--dataset-name {name!r} is not one of {', '.join(names)}")
    common: dict[str, Any] = {"seed": int(opts.seed or 0)}
    if opts.temperature is not None:
        common["temperature"] = float(opts.temperature)

    if suite is not None:
        if opts.dataset_name:
            raise BadRequestError("--suite gives the prompts: drop --dataset-name, or drop --suite")
        if opts.input_len is not None:
            raise BadRequestError("--input-len is for synthetic prompts; drop it or drop --suite")
        if opts.multi_turn:
            raise BadRequestError("--multi-turn works with --dataset-name sharegpt or random, not --suite")
        return SuiteWorkload(tuple(suite.requests(1)), suite.name, output_len=opts.output_len, **common)

    known = _names()
    for opt in load_options():
        if opt.dest not in known or not _given(getattr(opts, opt.dest)):
            continue
        if opt.needs and not _given(getattr(opts, opt.needs)):
            raise BadRequestError(f"{opt.flag} needs {option(opt.needs).flag}")
        if opt.workloads and name not in opt.workloads:
            raise BadRequestError(f"{opt.flag} {opt.refusal or 'is for --dataset-name ' + ' or '.join(opt.workloads)}")
    chosen = family(name)
    if chosen.reads_file and not opts.dataset_path:
        raise BadRequestError(f"--dataset-name {name} reads a file: add --dataset-path FILE")
    if not chosen.reads_file and opts.dataset_path:
        files = file_datasets()
        raise BadRequestError(f"cannot use the {name!r} dataset with --dataset-path: choose --dataset-name "
                              f"{', '.join(files[:-1])} or {files[-1]} for your file")
    path = _path(opts.dataset_path, base_dir) if opts.dataset_path else None
    workload = chosen.build(opts, path, common)
    workload.check()
    return workload


def _path(path: str, base_dir: str | None) -> str:
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return str(p)
