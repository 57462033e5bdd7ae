"""Workloads: where a run's requests come from — suites, synthetic prompts (random, prefix_repetition),
datasets (ShareGPT, custom JSONL), timed traces (timed_trace, mooncake_trace) and multi-turn
conversations. Every one is a source of GenerationRequests with send times (engine.workloads.base),
driven by the one load runner; none is a driver of its own.

`WorkloadOptions` holds the user's choices under `vllm bench serve`'s option names (the `load`
command's options, the app's Load form and a suite file's [dataset] table all fill it), and
`make_workload` checks them and builds the workload (BadRequestError: one line, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from engine.types import BadRequestError
from engine.workloads.base import FollowUp, LevelSource, Planned, Workload, workload_key

DATASET_NAMES = ("random", "prefix_repetition", "sharegpt", "custom", "timed_trace", "mooncake_trace")
FILE_DATASETS = ("sharegpt", "custom", "timed_trace", "mooncake_trace")

__all__ = ["DATASET_NAMES", "FILE_DATASETS", "FollowUp", "LevelSource", "Planned", "Workload", "WorkloadOptions",
           "make_workload", "workload_key"]


@dataclass
class WorkloadOptions:
    """The workload options of `tokentop load` (vLLM's names; None = not given)."""

    dataset_name: str | None = None
    dataset_path: str | None = None
    input_len: int | None = None
    output_len: int | None = None
    random_range_ratio: Any = None
    random_prefix_len: int | None = None
    prefix_repetition_prefix_len: int | None = None
    prefix_repetition_suffix_len: int | None = None
    prefix_repetition_num_prefixes: int | None = None
    prefix_repetition_output_len: int | None = None
    timed_trace_chunk_hash_size: int | None = None
    timed_trace_sec_multiplier: float | None = None
    timed_trace_label_timestamp: str | None = None
    timed_trace_label_input_length: str | None = None
    timed_trace_label_output_length: str | None = None
    timed_trace_label_hash_ids: str | None = None
    disable_shuffle: bool = False
    skip_chat_template: bool = False
    multi_turn: bool = False
    turns: int | None = None
    max_turns: int | None = None
    turn_delay_ms: float | None = None
    turn_delay_dist: str | None = None
    seed: int = 0
    temperature: float | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "") -> "WorkloadOptions":
        """From a suite file's [dataset] table (keys as the options, '-' or '_'; `name`/`path` short for
        dataset_name/dataset_path). Unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in data.items():
            k = str(key).replace("-", "_")
            k = {"name": "dataset_name", "path": "dataset_path"}.get(k, k)
            if k not in known:
                raise BadRequestError(
                    f"{where}[dataset]: unknown key {key!r} (see `tokentop load --help` for the names)")
            out[k] = value
        return cls(**out)


def _given(opts: WorkloadOptions, prefix: str) -> list[str]:
    return ["--" + f.name.replace("_", "-") for f in fields(opts)
            if f.name.startswith(prefix) and getattr(opts, f.name) is not None]


def make_workload(opts: WorkloadOptions, *, suite: Any = None, base_dir: str | None = None) -> Workload:
    """Check the options and build the workload (its file is checked too: `Workload.check`). `suite`: a
    Suite whose prompts are cycled (`--suite`); `base_dir`: where a relative dataset path is found (a
    suite file's folder)."""
    from engine.workloads.conversations import ThinkTime
    from engine.workloads.datasets import CustomWorkload, ShareGPTWorkload
    from engine.workloads.synthetic import PrefixRepetitionWorkload, RandomWorkload, SuiteWorkload
    from engine.workloads.traces import TraceWorkload

    name = opts.dataset_name or "random"
    if name not in DATASET_NAMES:
        raise BadRequestError(f"--dataset-name {name!r} is not one of {', '.join(DATASET_NAMES)}")
    common: dict[str, Any] = {"seed": int(opts.seed or 0)}
    if opts.temperature is not None:
        common["temperature"] = float(opts.temperature)

    def refuse(options: list[str], why: str) -> None:
        if options:
            raise BadRequestError(f"{options[0]} {why}")

    if suite is not None:
        if opts.dataset_name:
            raise BadRequestError("--suite gives the prompts: drop --dataset-name, or drop --suite")
        refuse(_given(opts, "input_len"), "is for synthetic prompts; drop it or drop --suite")
        if opts.multi_turn:
            raise BadRequestError("--multi-turn works with --dataset-name sharegpt or random, not --suite")
        return SuiteWorkload(tuple(suite.requests(1)), suite.name, output_len=opts.output_len, **common)

    if name not in ("random",):
        refuse(_given(opts, "random_"), "is for --dataset-name random")
        refuse(_given(opts, "input_len"), "is for --dataset-name random (the dataset sets the prompts)")
    if name != "prefix_repetition":
        refuse(_given(opts, "prefix_repetition_"), "is for --dataset-name prefix_repetition")
    if name not in ("timed_trace", "mooncake_trace"):
        refuse(_given(opts, "timed_trace_"), "is for --dataset-name timed_trace or mooncake_trace")
    if name in FILE_DATASETS and not opts.dataset_path:
        raise BadRequestError(f"--dataset-name {name} reads a file: add --dataset-path FILE")
    if name not in FILE_DATASETS and opts.dataset_path:
        raise BadRequestError(f"cannot use the {name!r} dataset with --dataset-path: choose --dataset-name sharegpt, "
                              "custom, timed_trace or mooncake_trace for your file")
    if opts.multi_turn and name not in ("sharegpt", "random"):
        raise BadRequestError("--multi-turn works with --dataset-name sharegpt or random")
    if not opts.multi_turn:
        refuse([o for o in ("--turns", "--max-turns", "--turn-delay-ms", "--turn-delay-dist")
                if getattr(opts, o[2:].replace("-", "_")) is not None], "needs --multi-turn")
    if opts.turns is not None and name != "random":
        raise BadRequestError("--turns is for --dataset-name random (a ShareGPT conversation has its own turns)")
    if opts.max_turns is not None and name != "sharegpt":
        raise BadRequestError("--max-turns is for --dataset-name sharegpt --multi-turn (random uses --turns)")
    if opts.disable_shuffle and name not in ("sharegpt", "custom"):
        raise BadRequestError("--disable-shuffle is for --dataset-name sharegpt or custom")
    if opts.skip_chat_template and name != "custom":
        raise BadRequestError("--skip-chat-template is for --dataset-name custom (the only dataset sent in "
                              "the chat template)")
    think = ThinkTime(float(opts.turn_delay_ms or 0.0), opts.turn_delay_dist or "fixed")
    path = _path(opts.dataset_path, base_dir) if opts.dataset_path else None

    if name == "random":
        workload: Workload = RandomWorkload(
            opts.input_len or 128, opts.output_len or 128,
            range_ratio=opts.random_range_ratio if opts.random_range_ratio is not None else 0.0,
            prefix_len=opts.random_prefix_len or 0, turns=(opts.turns or 3) if opts.multi_turn else 1,
            think=think, **common)
    elif name == "prefix_repetition":
        if opts.output_len is not None and opts.prefix_repetition_output_len is not None:
            raise BadRequestError("give --output-len or --prefix-repetition-output-len, not both")
        workload = PrefixRepetitionWorkload(
            _default(opts.prefix_repetition_prefix_len, 256), _default(opts.prefix_repetition_suffix_len, 256),
            _default(opts.prefix_repetition_num_prefixes, 10),
            _default(opts.output_len, _default(opts.prefix_repetition_output_len, 128)), **common)
    elif name == "sharegpt":
        workload = ShareGPTWorkload(path, opts.output_len, multi_turn=opts.multi_turn, max_turns=opts.max_turns,
                                    think=think, disable_shuffle=opts.disable_shuffle, **common)
    elif name == "custom":
        workload = CustomWorkload(path, opts.output_len, disable_shuffle=opts.disable_shuffle,
                                  skip_chat_template=bool(opts.skip_chat_template), **common)
    else:
        labels = {"timestamp": opts.timed_trace_label_timestamp, "input_length": opts.timed_trace_label_input_length,
                  "output_length": opts.timed_trace_label_output_length,
                  "hash_ids": opts.timed_trace_label_hash_ids}
        workload = TraceWorkload(path, name, chunk_hash_size=opts.timed_trace_chunk_hash_size,
                                 sec_multiplier=opts.timed_trace_sec_multiplier, labels=labels,
                                 output_len=opts.output_len, **common)
    workload.check()
    return workload


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _path(path: str, base_dir: str | None) -> str:
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return str(p)
