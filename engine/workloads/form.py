"""The Load form's workload fields, as typed, to WorkloadOptions: the `load` command's options by
another road (data.jobs.load.load_spec checks them the same way). Bad input: BadRequestError naming
the field."""

from __future__ import annotations

import math

from engine.types import BadRequestError
from engine.workloads import WorkloadOptions

FORM_WORKLOADS = ("random", "prefix_repetition", "sharegpt", "custom", "timed_trace", "mooncake_trace", "suite")


def _form_number(text: str, label: str, cast=int, minimum: float = 0):
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = cast(text)
    except ValueError:
        raise BadRequestError(f"{label}: {text!r} is not a {'whole number' if cast is int else 'number'}") from None
    if value < minimum or (isinstance(value, float) and math.isinf(value)):
        raise BadRequestError(f"{label} must be {minimum:g} or more (got {text})")
    return value


def parse_think_time(text: str) -> tuple[float | None, str | None]:
    """The form's think time: '500' (fixed, ms) or 'exp 500' / 'exp:500' (exponential with that mean)."""
    text = (text or "").strip().lower()
    if not text:
        return None, None
    dist = "fixed"
    for mark in ("exp:", "exp ", "exp"):
        if text.startswith(mark):
            dist, text = "exponential", text[len(mark):].strip()
            break
    return _form_number(text, "think ms", float), dist


def form_workload(kind: str, *, path: str = "", range_ratio: str = "", prefix_len: str = "", prefix: str = "",
                  suffix: str = "", prefixes: str = "", turns: str = "", think: str = "", multi_turn: bool = False,
                  time_scale: str = "", block: str = "", seed: int = 0,
                  skip_chat_template: bool = False) -> tuple[WorkloadOptions, str | None]:
    """The Load form's workload fields, as typed, to (WorkloadOptions, suite name or file) — the `load`
    command's options by another road; load_spec checks them the same way. Bad input: BadRequestError
    naming the field."""
    if kind not in FORM_WORKLOADS:
        raise BadRequestError(f"workload {kind!r} is not one of {', '.join(FORM_WORKLOADS)}")
    path = (path or "").strip()
    if kind == "suite":
        return WorkloadOptions(seed=seed), path or "seed"
    opts = WorkloadOptions(dataset_name=kind, seed=seed)
    if kind in ("sharegpt", "custom", "timed_trace", "mooncake_trace"):
        if not path:
            raise BadRequestError(f"the {kind} workload reads a file: type its path in the file field")
        opts.dataset_path = path
    if kind == "custom":
        opts.skip_chat_template = bool(skip_chat_template)  # vLLM's --skip-chat-template
    if kind == "random":
        if range_ratio.strip():
            opts.random_range_ratio = range_ratio.strip()
        opts.random_prefix_len = _form_number(prefix_len, "prefix len")
        n = _form_number(turns, "turns", minimum=1)
        if n is not None and n > 1:
            opts.multi_turn, opts.turns = True, n
    elif kind == "prefix_repetition":
        opts.prefix_repetition_prefix_len = _form_number(prefix, "prefix")
        opts.prefix_repetition_suffix_len = _form_number(suffix, "suffix")
        opts.prefix_repetition_num_prefixes = _form_number(prefixes, "prefixes", minimum=1)
    elif kind == "sharegpt":
        opts.multi_turn = bool(multi_turn)
        if multi_turn:
            opts.max_turns = _form_number(turns, "max turns", minimum=1)
    elif kind in ("timed_trace", "mooncake_trace"):
        opts.timed_trace_sec_multiplier = _form_number(time_scale, "time ×", float)
        if opts.timed_trace_sec_multiplier == 0:
            raise BadRequestError("time × must be above 0")
        opts.timed_trace_chunk_hash_size = _form_number(block, "block", minimum=1)
    if opts.multi_turn:
        opts.turn_delay_ms, opts.turn_delay_dist = parse_think_time(think)
    return opts, None
