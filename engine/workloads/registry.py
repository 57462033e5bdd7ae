"""The workload families and their options, found where they are declared: every module of this package
may hold an `OPTIONS` list (engine.workloads.options.Option, the `load` options it reads) and a `FAMILIES`
list (`Family`, one per `--dataset-name` it builds). Nothing lists the modules: a new family is a new
module in engine/workloads/ with its declarations, and `tokentop load`, its --help, the Load form and
`make_workload` find it here. vLLM keeps each dataset's flags beside the dataset the same way
(`add_dataset_parser` in vllm/benchmarks/datasets.py); the registry replaces the if/elif on the name.

Order: families by `slot` (the --dataset-name choices and the form's workloads); a module's options
after those of the modules whose families come earlier, modules without a family last (multi-turn),
each module's list in its own order (so --help reads the same whatever order Python imports in).
The declarations are read on every call (a test may put its own in a module with monkeypatch)."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from engine.workloads import WorkloadOptions
    from engine.workloads.base import Workload
    from engine.workloads.options import Option

# (options, the dataset file's path resolved or None, every workload's keywords: seed, temperature)
Build = Callable[["WorkloadOptions", "str | None", dict[str, Any]], "Workload"]


@dataclass(frozen=True)
class Family:
    """One `--dataset-name` (vLLM's spelling) and how its workload is built. build(opts, path, common)
    reads the family's own options from `opts` (WorkloadOptions, by dest) and returns the Workload
    unchecked (make_workload checks it: its file is read then); BadRequestError (one line naming the
    option) for a choice it refuses. reads_file: it needs --dataset-path (refused without one, and the
    path refused for a family that reads none); slot: its place among the names (lower first); about:
    its line under `workloads` in `tokentop load --help` (the name's column is added)."""

    name: str
    build: Build
    reads_file: bool = False
    slot: int = 50
    about: str = ""


@functools.cache
def _modules() -> tuple[ModuleType, ...]:
    """Every module of engine.workloads (imported once; their declarations are read at each call)."""
    import engine.workloads as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    return tuple(importlib.import_module(f"engine.workloads.{name}") for name in names)


def families() -> list[Family]:
    """Every registered family, by slot then name. A name declared twice is a ValueError (a bug)."""
    found = [f for m in _modules() for f in getattr(m, "FAMILIES", ())]
    names = [f.name for f in found]
    if len(names) != len(set(names)):
        raise ValueError(f"a workload family is declared twice: {sorted(names)}")
    return sorted(found, key=lambda f: (f.slot, f.name))


def family(name: str) -> Family:
    """The family called `name` (KeyError when none)."""
    for f in families():
        if f.name == name:
            return f
    raise KeyError(name)


def dataset_names() -> tuple[str, ...]:
    """The --dataset-name choices, in slot order (the first is the default)."""
    return tuple(f.name for f in families())


def file_datasets() -> tuple[str, ...]:
    """The families that read a --dataset-path file."""
    return tuple(f.name for f in families() if f.reads_file)


def family_options() -> list["Option"]:
    """The families' own options (each module's OPTIONS), in --help order (the module docstring's)."""
    slots = {m: min((f.slot for f in getattr(m, "FAMILIES", ())), default=None) for m in _modules()}
    declaring = [m for m in _modules() if getattr(m, "OPTIONS", None)]
    ordered = sorted(declaring, key=lambda m: (slots[m] is None, slots[m] or 0, m.__name__))
    return [opt for m in ordered for opt in m.OPTIONS]
