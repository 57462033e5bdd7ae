"""Each `load` option declared once: its name as `vllm bench serve` spells it, type (its validator),
default, help, the workloads it applies to and how the app's Load form shows it. From these
declarations are made the `load` command's argparse options (`to_argparse`), the Load screen's fields
(tui.screens.load iterates `form_fields()`; this module holds plain data and never imports Textual) and
the typed WorkloadOptions, by one parser from either source (`options_from_namespace`,
`options_from_form`).

A workload family keeps its own options beside it, in a module-level `OPTIONS` list: synthetic.py
(random, prefix_repetition), datasets.py (sharegpt, custom), traces.py (timed_trace, mooncake_trace),
conversations.py (multi-turn), found by engine.workloads.registry (nothing lists the modules), with
the families that read them (`FAMILIES`). The options every workload shares are declared here. vLLM
does the same with `add_dataset_parser` in vllm/benchmarks/datasets.py (each dataset's flags beside
the dataset); Harlequin declares each option once as an object that renders both a click option and a
Textual input.

Validators take the text a user typed and return the value or raise BadRequestError with one line that
names the option (`--burstiness 'abc' is not a number`): the command and the form say the same words.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from engine.types import BadRequestError

Check = Callable[[str, str], Any]  # (flag, text) -> value; BadRequestError (one line) when refused


# -- validators: (flag, text) -> value -------------------------------------------------------------
def whole(minimum: int | None = 1) -> Check:
    """A whole number >= `minimum` (None: any)."""

    def check(flag: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise BadRequestError(f"{flag} {text!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise BadRequestError(f"{flag} must be {minimum} or more (got {text})")
        return value

    return check


def number(above_zero: bool = False) -> Check:
    """A number: >= 0 and finite, or (above_zero) > 0 (inf allowed: uniform arrivals for --burstiness)."""

    def check(flag: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise BadRequestError(f"{flag} {text!r} is not a number") from None
        if above_zero and not value > 0:
            raise BadRequestError(f"{flag} must be above 0 (got {text})")
        if not above_zero and (not value >= 0 or math.isinf(value)):
            raise BadRequestError(f"{flag} must be 0 or more (got {text})")
        return value

    return check


@dataclass(frozen=True)
class Field:
    """How the Load form shows an option (plain data: tui.screens.load renders it). widget: "number"
    (digits only), "text" or "check"; group: the container of a workload's own fields ("opts-random"),
    "" for a field the screen places itself; workloads: where the form shows it (default: the option's);
    needs: another option (a flag) that must be set for this field to be read (multi-turn's think time);
    slot: its place on the form, and its group's among the workloads' groups (lower first);
    read: the form's own reading of the text, (option, text) -> {dest: value}, where it differs."""

    label: str
    id: str
    placeholder: str = ""
    widget: str = "number"
    value: str = ""
    group: str = ""
    workloads: tuple[str, ...] | None = None
    needs: str | None = None
    slot: int = 50
    read: Callable[["Option", str], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Option:
    """One `load` option. flag: vLLM's spelling; check: the validator (None: the text as given);
    workloads: the dataset names it applies to (() = all; make_workload refuses it for another, with
    `refusal` after the flag, default "is for --dataset-name A or B"); needs: the dest of another option
    it is refused without ("--turns needs --multi-turn"); section: its --help group ("" = options,
    "pattern" = the concurrency/request-rate choice); workload: the parser puts it in WorkloadOptions
    (under its dest; its family's build reads it there); field: how the Load form shows it (None: not
    on the form)."""

    flag: str
    help: str
    check: Check | None = None
    default: Any = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    store_true: bool = False
    workloads: tuple[str, ...] = ()
    section: str = ""
    workload: bool = False
    field: Field | None = None
    needs: str | None = None
    refusal: str = ""

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def parse(self, text: str) -> Any:
        """The typed value of `text` (the one validator, for the command and the form alike)."""
        text = text.strip()
        return self.check(self.flag, text) if self.check is not None else text

    def problem(self, text: str) -> str | None:
        """Why `text` cannot be used (None when it can; empty text is the default)."""
        if not text.strip():
            return None
        try:
            self.parse(text)
        except BadRequestError as exc:
            return str(exc)
        return None

    def form_workloads(self) -> tuple[str, ...]:
        if self.field is not None and self.field.workloads is not None:
            return self.field.workloads
        return self.workloads


SECTIONS = {"workload": "workload (vLLM bench serve's names)", "multi-turn": "multi-turn conversations"}


# -- the options every workload shares --------------------------------------------------------------
def _dataset_names() -> tuple[str, ...]:
    from engine.workloads.registry import dataset_names

    return dataset_names()


def dataset_name_help() -> str:
    """--dataset-name's help: the registered families' names, the first the default."""
    first, *rest = _dataset_names()
    return ", ".join([f"{first} (default)", *rest])


def workloads_epilog() -> str:
    """The lines under `workloads` in `tokentop load --help`: each family's name (FILE when it reads one)
    and its `about`, in slot order."""
    from engine.workloads.registry import families

    return "".join(f"  {f.name + (' FILE' if f.reads_file else ''):<19} {f.about}\n" for f in families())


PATTERN = [
    Option("--concurrency", "levels, e.g. 1,2,4 (default), or 'sweep'", section="pattern"),
    Option("--request-rate", "requests/s (Poisson unless --burstiness); several: 1,2,4; inf = all at once",
           section="pattern"),
]
LOAD_BEFORE = [
    Option("--burstiness", "gamma shape for --request-rate (1 = Poisson)", number(above_zero=True), default=1.0,
           field=Field("burstiness", "load-burstiness", "1", "text", "1")),
    Option("--max-concurrency", "cap on requests in flight (with --request-rate)", whole(1)),
    Option("--max-level", "largest concurrency of --concurrency sweep (default 64)", whole(1), default=64),
    Option("--input-len", "random prompts: length in tokens (default 128)", whole(1), aliases=("--random-input-len",),
           workloads=("random",), refusal="is for --dataset-name random (the dataset sets the prompts)",
           field=Field("input len", "load-input-len", "128", value="128")),
    Option("--output-len", "output tokens per request (default 128; a dataset's own lengths when it has them)",
           whole(1), aliases=("--random-output-len", "--sharegpt-output-len"),
           field=Field("output len", "load-output-len", "128", value="128")),
    Option("--suite", "a suite's prompts ('seed' or a TOML file, which may name a [dataset]) instead of "
           "synthetic ones"),
    Option("--num-prompts", "requests per level (conversations with --multi-turn; a trace: its N earliest, "
           "default all)", whole(1), field=Field("prompts/level", "load-num-prompts", "auto")),
    Option("--num-warmups", "requests sent before every level and not measured (default 0)", whole(0), default=0,
           field=Field("warm-ups", "load-warmups", "0", value="0")),
]
WORKLOAD_COMMON = [
    Option("--dataset-name", "", metavar="NAME", section="workload", workload=True),  # help, choices: the families
    Option("--dataset-path", "the dataset file (JSON, JSONL, CSV or Parquet) for sharegpt, custom and the traces",
           metavar="FILE", section="workload", workload=True),
]
LOAD_AFTER = [
    Option("--client-processes", "processes sharing every level's requests (--engine openai; default: one per 2 idle "
           "cores, at most 8; 1 with the in-process vLLM engine)", whole(1), metavar="N"),
    Option("--slo", "SLOs in ms for goodput, e.g. ttft=500,tpot=50 (also e2el)",
           field=Field("SLO ms", "load-slo", "none, e.g. ttft=500", "text")),
    Option("--seed", "seed for arrivals and prompts (default 0)", whole(None), default=0),
]


def family_options() -> list[Option]:
    """The workload families' own options, in --help order (each family's module declares its own
    OPTIONS; engine.workloads.registry finds them)."""
    from engine.workloads.registry import family_options as declared

    return declared()


def load_options() -> list[Option]:
    """Every `load` option, once, in --help order (engine and --db options are the CLI's own)."""
    return [*PATTERN, *LOAD_BEFORE, *WORKLOAD_COMMON, *family_options(), *LOAD_AFTER]


def option(dest: str) -> Option:
    """The declaration whose dest is `dest` (KeyError when none)."""
    for opt in load_options():
        if opt.dest == dest:
            return opt
    raise KeyError(dest)


# -- (a) the command's argparse options -------------------------------------------------------------
def _argparse_type(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return opt.parse(text)
        except BadRequestError as exc:  # the validator's own line, without argparse's "argument X:" before it
            raise argparse.ArgumentError(None, str(exc)) from None

    parse.__name__ = opt.dest
    return parse


def to_argparse(parser: argparse.ArgumentParser, options: Iterable[Option] | None = None) -> None:
    """Add the declared options to `parser`: the pattern ones mutually exclusive, the others in their
    --help sections, in declaration order."""
    options = list(load_options() if options is None else options)
    groups: dict[str, Any] = {"": parser}
    for opt in options:
        if opt.section not in groups:
            groups[opt.section] = (parser.add_mutually_exclusive_group() if opt.section == "pattern"
                                   else parser.add_argument_group(SECTIONS[opt.section]))
        kwargs: dict[str, Any] = {"help": opt.help}
        if opt.store_true:
            kwargs["action"] = "store_true"
        else:
            kwargs["default"] = opt.default
            if opt.check is not None:
                kwargs["type"] = _argparse_type(opt)
            if opt.choices is not None:
                kwargs["choices"] = list(opt.choices)
            elif opt.dest == "dataset_name":
                kwargs["choices"] = list(_dataset_names())
                kwargs["help"] = dataset_name_help()
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
        if opt.aliases:
            kwargs["dest"] = opt.dest
        groups[opt.section].add_argument(opt.flag, *opt.aliases, **kwargs)


# -- (c) WorkloadOptions, by one parser from either source --------------------------------------------
def workload_options_of(values: Mapping[str, Any], seed: int = 0):
    """WorkloadOptions from typed values by dest (an argparse namespace's vars, or the form's reading)."""
    from engine.workloads import WorkloadOptions

    given = {o.dest: values[o.dest] for o in load_options() if o.workload and o.dest in values}
    return WorkloadOptions(seed=seed, **given)


def options_from_namespace(args: argparse.Namespace):
    """The command line's workload options (WorkloadOptions, vLLM's names)."""
    return workload_options_of(vars(args), seed=args.seed)


FORM_WORKLOADS_EXTRA = ("suite",)


def form_workloads() -> tuple[str, ...]:
    """The Load form's workload choices: the datasets, then a suite's prompts."""
    return (*_dataset_names(), *FORM_WORKLOADS_EXTRA)


def form_fields(group: str | None = None) -> list[Option]:
    """The declarations the Load form shows, by slot then declaration order; `group`: only that container's."""
    shown = [o for o in load_options() if o.field is not None and (group is None or o.field.group == group)]
    return sorted(shown, key=lambda o: o.field.slot)  # type: ignore[union-attr]  # form_fields(): field set


def form_groups() -> list[str]:
    """The containers of the workloads' own fields, by their fields' lowest slot, then declaration order."""
    slots: dict[str, int] = {}
    for o in form_fields():
        if o.field.group:  # type: ignore[union-attr]  # form_fields(): field set
            slots[o.field.group] = min(slots.get(o.field.group, o.field.slot), o.field.slot)  # type: ignore[union-attr]  # form_fields(): field set
    return sorted(slots, key=lambda g: slots[g])


def field_shown(opt: Option, kind: str, checked: Mapping[str, bool]) -> bool:
    """Whether the form shows (and reads) `opt` for workload `kind`; `checked`: the form's checkboxes by
    dest. A field that needs a flag shows when that flag's box is checked, or when the box is not on the
    form for this workload (random's think time: its turns decide)."""
    if kind not in opt.form_workloads():
        return False
    needs = opt.field.needs if opt.field else None
    if needs is None:
        return True
    box = option(needs)
    return kind not in box.form_workloads() or bool(checked.get(needs))


def group_shown(group: str, kind: str, checked: Mapping[str, bool]) -> bool:
    return any(field_shown(o, kind, checked) for o in form_fields(group))


def options_from_form(kind: str, texts: Mapping[str, Any], seed: int = 0) -> tuple[Any, str | None]:
    """The Load form's workload fields to (WorkloadOptions, suite name or file). `texts`: each field's
    value by dest (a string, or a bool for a box); `dataset_path`: the file field. Only the fields the
    form shows for `kind` are read, each with its option's validator. Bad input: BadRequestError."""
    from engine.workloads import WorkloadOptions
    from engine.workloads.registry import file_datasets

    if kind not in form_workloads():
        raise BadRequestError(f"workload {kind!r} is not one of {', '.join(form_workloads())}")
    path = str(texts.get("dataset_path") or "").strip()
    if kind == "suite":
        return WorkloadOptions(seed=seed), path or "seed"
    values: dict[str, Any] = {"dataset_name": kind}
    if kind in file_datasets():
        if not path:
            raise BadRequestError(f"the {kind} workload reads a file: type its path in the file field")
        values["dataset_path"] = path
    for opt in form_fields():
        if not opt.field.group or not opt.workload or kind not in opt.form_workloads():  # type: ignore[union-attr]  # form_fields(): field set
            continue
        if opt.field.needs and not values.get(opt.field.needs):  # type: ignore[union-attr]  # form_fields(): field set
            continue  # e.g. think time without multi-turn
        raw = texts.get(opt.dest, False if opt.store_true else "")
        if opt.store_true:
            if raw:
                values[opt.dest] = bool(raw)
            continue
        text = str(raw or "").strip()
        if not text:
            continue
        values.update(opt.field.read(opt, text) if opt.field.read else {opt.dest: opt.parse(text)})  # type: ignore[union-attr]  # form_fields(): field set
    return workload_options_of(values, seed=seed), None
