"""Synthetic prompts: vLLM's random and prefix_repetition datasets, and a suite's prompts under load.

`RandomWorkload` is vLLM 0.32's RandomDataset (`--dataset-name random`), rule for rule, so the same
seed gives the same prompts as `vllm bench serve`:
  * lengths: input uniform in [floor(L'·(1−R)), ceil(L'·(1+R))] with L' = --input-len minus the special
    tokens the tokenizer adds (BOS), output in [floor(O·(1−R)), ceil(O·(1+R))] (at least 1), R =
    --random-range-ratio (a number, or {"input": R1, "output": R2}); one `numpy.default_rng(seed)`;
  * a fixed random prefix of --random-prefix-len tokens shared by every request;
  * the rest `allowed[(offset + i + arange(len)) % len(allowed)]`, allowed = the vocabulary less the
    special tokens, offset drawn per request;
  * decode, re-encode and fix up until the text re-tokenises to the length (gen_prompt_decode_to_target_len).
The request carries the text and the exact token ids the server will see (with BOS), so
`--input-len 64` sends 64 prompt tokens, as `vllm bench serve --random-input-len 64` does.

`PrefixRepetitionWorkload` is vLLM's PrefixRepetitionRandomDataset (`--dataset-name prefix_repetition`):
N random prefixes of P tokens, num_prompts // N prompts per prefix, each with its own S-token suffix,
shuffled: a --num-prompts that is not a multiple of N sends (num_prompts // N) · N requests, as vLLM
does; the run says so and stores that number as the level's planned requests. vLLM decodes prefix + suffix
and sends the text without checking it re-tokenises to P + S; tokentop checks, and fixes up the suffix's end
where it does not (the shared prefix is untouched), so lengths are exact.

`SuiteWorkload` cycles a suite's prompts (the article's short/medium/long) under load.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.types import BadRequestError, GenerationRequest
from engine.workloads.base import LevelSource, Planned, Workload
from engine.workloads.conversations import Conversation, ConversationSource, ThinkTime, Turn
from engine.workloads.tokens import Tokens, gen_prompt_decode_to_target_len

DEFAULT_INPUT_LEN = 128
DEFAULT_OUTPUT_LEN = 128


@dataclass(frozen=True)
class Prompt:
    """One synthetic prompt: its text, the token ids a server makes of it, the length asked for and the
    output tokens to generate."""

    text: str
    ids: tuple[int, ...] | None
    target: int
    output_len: int


def parse_range_ratio(value: Any) -> float | dict[str, float]:
    """--random-range-ratio: a number, or a JSON object {"input": R1, "output": R2}; each in [0, 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed: Any = float(value)
    elif isinstance(value, dict):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = float(text)
        except ValueError:
            try:
                parsed = json.loads(text)
            except ValueError:
                raise BadRequestError(f"--random-range-ratio {text!r} must be a number in [0, 1) "
                                      'or {"input": R, "output": R}') from None
    if isinstance(parsed, dict):
        try:
            ratios = {"input": float(parsed["input"]), "output": float(parsed["output"])}
        except (KeyError, TypeError, ValueError):
            raise BadRequestError('--random-range-ratio as an object needs numbers "input" and "output"') from None
        for r in ratios.values():
            if not 0.0 <= r < 1.0:
                raise BadRequestError(f"--random-range-ratio must be in [0, 1) (got {r:g})")
        return ratios
    if not isinstance(parsed, float) or not 0.0 <= parsed < 1.0:
        raise BadRequestError(f"--random-range-ratio must be in [0, 1) (got {value})")
    return parsed


def _ratios(range_ratio: float | dict[str, float]) -> tuple[float, float]:
    if isinstance(range_ratio, dict):
        return float(range_ratio["input"]), float(range_ratio["output"])
    return float(range_ratio), float(range_ratio)


class RandomWorkload(Workload):
    """vLLM's random dataset (see the module docstring); optionally multi-turn (`turns` > 1: each
    simulated user sends `turns` random messages, each with the whole conversation so far)."""

    kind = "random"

    def __init__(self, input_len: int = DEFAULT_INPUT_LEN, output_len: int = DEFAULT_OUTPUT_LEN, *,
                 range_ratio: float | dict[str, float] = 0.0, prefix_len: int = 0, turns: int = 1,
                 think: ThinkTime | None = None, **kw: Any):
        super().__init__(output_len=output_len, **kw)
        self.input_len = int(input_len)
        self.range_ratio = parse_range_ratio(range_ratio)
        self.prefix_len = int(prefix_len)
        self.turns = int(turns)
        self.think = think or ThinkTime()
        self._samples: dict[int, list[Prompt]] = {}

    @property
    def needs_tokenizer(self) -> bool:  # type: ignore[override]
        return False  # without one (a server whose model is not here) it says lengths are approximate

    def check(self) -> None:
        if self.input_len < 1:
            raise BadRequestError(f"--input-len must be 1 or more (got {self.input_len})")
        if self.prefix_len < 0:
            raise BadRequestError(f"--random-prefix-len must be 0 or more (got {self.prefix_len})")
        if self.turns < 1:
            raise BadRequestError(f"--turns must be 1 or more (got {self.turns})")

    def _prepare(self, tokens: Tokens | None, max_prompts: int | None) -> None:
        self.check()
        if tokens is None:
            self.notes.append("no tokenizer for this model: prompt lengths are approximate (words of about "
                              "--input-len tokens; the server's count is stored; pass --tokenizer for exact ones)")
            return
        r_in, _ = _ratios(self.range_ratio)
        real = max(0, self.input_len - tokens.num_special)
        if self.prefix_len + math.floor(real * (1.0 - r_in)) < 1:
            raise BadRequestError(
                f"--input-len {self.input_len} is too small: with {tokens.num_special} special token(s) and range "
                f"ratio {r_in:g} a prompt could have no tokens; raise --input-len or --random-prefix-len")

    def sample(self, n: int) -> list[Prompt]:
        """vLLM's RandomDataset.sample(n) (seeded by `seed`): the same prompts for the same n."""
        if n not in self._samples:
            self._samples[n] = self._sample(n)
        return self._samples[n]

    def _sample(self, n: int) -> list[Prompt]:
        tokens = self.tokens
        out_len = self.output_len or DEFAULT_OUTPUT_LEN
        r_in, r_out = _ratios(self.range_ratio)
        if tokens is None:  # approximate: words, counted by the engine
            rng = np.random.default_rng(self.seed)
            lo, hi = math.floor(self.input_len * (1 - r_in)), math.ceil(self.input_len * (1 + r_in))
            olo, ohi = max(1, math.floor(out_len * (1 - r_out))), max(1, math.ceil(out_len * (1 + r_out)))
            ins, outs = rng.integers(lo, hi + 1, size=n), rng.integers(olo, ohi + 1, size=n)
            words = ["hello"] * self.prefix_len
            return [Prompt(" ".join(words + ["hello"] * max(1, int(k))), None, self.prefix_len + int(k), int(o))
                    for k, o in zip(ins, outs)]
        rng = np.random.default_rng(self.seed)
        # vllm.benchmarks.datasets.utils.get_sampling_params
        real = max(0, self.input_len - tokens.num_special)
        in_lo, in_hi = math.floor(real * (1 - r_in)), math.ceil(real * (1 + r_in))
        out_lo, out_hi = max(math.floor(out_len * (1 - r_out)), 1), max(math.ceil(out_len * (1 + r_out)), 1)
        input_lens = rng.integers(in_lo, in_hi + 1, size=n)
        output_lens = rng.integers(out_lo, out_hi + 1, size=n)
        offsets = rng.integers(0, tokens.vocab_size, size=n)
        allowed = tokens.allowed()
        prefix: list[int] = []
        if self.prefix_len > 0:  # RandomDataset.get_prefix
            prefix_ids = allowed[rng.integers(0, len(allowed), size=self.prefix_len)].tolist()
            _, prefix, _ = gen_prompt_decode_to_target_len(tokens, prefix_ids, self.prefix_len, rng=rng)
        out = []
        for i in range(n):  # RandomDataset.generate_token_sequence
            length = int(input_lens[i])
            inner = allowed[(int(offsets[i]) + i + np.arange(length)) % len(allowed)].tolist()
            text, adjusted, _ = gen_prompt_decode_to_target_len(tokens, prefix + inner, self.prefix_len + length,
                                                                rng=rng)
            out.append(_prompt(tokens, text, self.prefix_len + length + tokens.num_special, int(output_lens[i])))
        return out

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        if self.turns > 1:
            prompts = self.sample(num_prompts * self.turns)
            convs = [Conversation(c, tuple(Turn(p.text, p.output_len)
                                           for p in prompts[c * self.turns:(c + 1) * self.turns]))
                     for c in range(num_prompts)]
            return ConversationSource(convs, self.request_maker(), self.think, self.seed)
        return LevelSource([Planned(self.request(p.text, p.output_len, i, input_len=p.target,
                                                 prompt_token_ids=p.ids))
                            for i, p in enumerate(self.sample(num_prompts))])

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input_len": self.input_len, "output_len": self.output_len or DEFAULT_OUTPUT_LEN,
                               "range_ratio": self.range_ratio, "prefix_len": self.prefix_len,
                               "temperature": self.temperature, "ignore_eos": self.enforce_length}
        if self.turns > 1:
            out.update(turns=self.turns, **self.think.to_json())
        return out

    def label(self) -> str:
        r = self.range_ratio
        spread = "" if not r else f" ±{r:g}" if not isinstance(r, dict) else f" ±{r['input']:g}/{r['output']:g}"
        prefix = f" prefix {self.prefix_len}" if self.prefix_len else ""
        turns = f" {self.turns} turns{self.think.label()}" if self.turns > 1 else ""
        return f"random {self.input_len}→{self.output_len or DEFAULT_OUTPUT_LEN}{spread}{prefix}{turns}"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["input_len"] = self.input_len  # the settings' old shape (load runs before workloads)
        out["output_len"] = self.output_len or DEFAULT_OUTPUT_LEN
        return out


def _prompt(tokens: Tokens, text: str, target: int, output_len: int) -> Prompt:
    """The ids a server makes of `text` (special tokens included): what the in-process engine is fed."""
    return Prompt(text, tuple(tokens.encode(text, special=True)), target, output_len)


class PrefixRepetitionWorkload(Workload):
    """vLLM's prefix_repetition dataset (see the module docstring)."""

    kind = "prefix_repetition"
    needs_tokenizer = True

    def __init__(self, prefix_len: int = 256, suffix_len: int = 256, num_prefixes: int = 10,
                 output_len: int = 128, **kw: Any):
        super().__init__(output_len=output_len, **kw)
        self.prefix_len, self.suffix_len, self.num_prefixes = int(prefix_len), int(suffix_len), int(num_prefixes)
        self._samples: dict[int, list[Prompt]] = {}
        self.fixed_up = 0

    def check(self) -> None:
        for name, value, low in (("prefix-len", self.prefix_len, 0), ("suffix-len", self.suffix_len, 0),
                                 ("num-prefixes", self.num_prefixes, 1), ("output-len", self.output_len or 0, 1)):
            if value < low:
                raise BadRequestError(f"--prefix-repetition-{name} must be {low} or more (got {value})")
        if self.prefix_len + self.suffix_len < 1:
            raise BadRequestError("--prefix-repetition-prefix-len plus -suffix-len must be 1 or more")

    def _check_prompts(self, max_prompts: int | None) -> None:
        self.check()
        if max_prompts is not None and max_prompts < self.num_prefixes:
            raise BadRequestError(f"--num-prompts {max_prompts} must be at least --prefix-repetition-num-prefixes "
                                  f"{self.num_prefixes} (each prefix gets num_prompts // num_prefixes prompts)")

    def default_num_prompts(self) -> int | None:
        return None

    def planned_count(self, num_prompts: int) -> int:
        return (int(num_prompts) // self.num_prefixes) * self.num_prefixes

    def planned_lengths(self, num_prompts: int) -> list[int | None]:
        return [int(self.output_len or 128) if self.enforce_length else None] * self.planned_count(num_prompts)

    def level_notes(self, num_prompts: int) -> list[str]:
        sent = self.planned_count(num_prompts)
        if sent == num_prompts or sent == 0:
            return []
        return [f"--num-prompts {num_prompts} sends {sent} requests: {num_prompts // self.num_prefixes} per "
                f"prefix × {self.num_prefixes} prefixes (vLLM's num_prompts // num_prefixes; "
                f"{num_prompts - sent} not made)"]

    def _prepare(self, tokens: Tokens | None, max_prompts: int | None) -> None:
        self._check_prompts(max_prompts)
        self.notes.extend(self.level_notes(max_prompts) if max_prompts else [])

    def sample(self, n: int) -> list[Prompt]:
        if n not in self._samples:
            self._samples[n] = self._sample(n)
        return self._samples[n]

    def _sample(self, n: int) -> list[Prompt]:
        tokens = self.tokens
        assert tokens is not None
        per_prefix = n // self.num_prefixes
        if per_prefix == 0:
            raise BadRequestError(f"--num-prompts {n} must be at least --prefix-repetition-num-prefixes "
                                  f"{self.num_prefixes}")
        # vLLM seeds numpy's and Python's global generators; private ones with the same seeds draw alike.
        legacy = np.random.RandomState(self.seed)
        fixups = np.random.default_rng([self.seed, 0x7F1F])  # tokentop's own fix-ups, off vLLM's stream

        def exact(length: int) -> list[int]:
            ids = legacy.randint(0, tokens.vocab_size, size=length).tolist()
            _, adjusted, _ = gen_prompt_decode_to_target_len(tokens, ids, length, legacy=legacy)
            return adjusted

        out: list[Prompt] = []
        for _ in range(self.num_prefixes):
            prefix = exact(self.prefix_len)
            for _ in range(per_prefix):
                combined = prefix + exact(self.suffix_len)
                text = tokens.decode(combined)
                if len(tokens.encode(text)) != len(combined):
                    # The junction re-tokenised differently (vLLM sends it as is): fix up the end only.
                    self.fixed_up += 1
                    text, combined, _ = gen_prompt_decode_to_target_len(tokens, combined, len(combined), rng=fixups)
                out.append(_prompt(tokens, text, self.prefix_len + self.suffix_len + tokens.num_special,
                                   int(self.output_len or 128)))
        random.Random(self.seed).shuffle(out)
        return out

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        prompts = self.sample(num_prompts)
        return LevelSource([Planned(self.request(p.text, p.output_len, i, input_len=p.target, prompt_token_ids=p.ids))
                            for i, p in enumerate(prompts)])

    def params(self) -> dict[str, Any]:
        return {"prefix_len": self.prefix_len, "suffix_len": self.suffix_len, "num_prefixes": self.num_prefixes,
                "output_len": self.output_len, "temperature": self.temperature, "ignore_eos": self.enforce_length}

    def label(self) -> str:
        return f"prefix {self.prefix_len}+{self.suffix_len} ×{self.num_prefixes}→{self.output_len}"

    def report(self) -> dict[str, Any]:
        return {"fixed_up": self.fixed_up} if self.fixed_up else {}


class SuiteWorkload(Workload):
    """A suite's prompts, cycled, under load (`tokentop load --suite seed`)."""

    kind = "suite"

    def __init__(self, suite_requests: Sequence[GenerationRequest], suite_name: str, *,
                 output_len: int | None = None, **kw: Any):
        super().__init__(output_len=output_len, **kw)
        self.suite_requests = tuple(suite_requests)
        self.suite_name = suite_name

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        out = []
        for i in range(num_prompts):
            base = self.suite_requests[i % len(self.suite_requests)]
            out.append(Planned(GenerationRequest(
                prompt=base.prompt, max_tokens=self.output_len or base.max_tokens, temperature=base.temperature,
                top_p=base.top_p, enforce_length=base.enforce_length, seed=self.seed + level_index * 100_003 + i,
                case_id=base.case_id, rep=i)))
        return LevelSource(out)

    def params(self) -> dict[str, Any]:
        cases = [(r.case_id, r.prompt, r.max_tokens) for r in self.suite_requests]
        return {"suite": self.suite_name, "cases": len(cases), "output_len": self.output_len,
                "prompts_hash": _hash(cases)}

    def label(self) -> str:
        return f"suite {self.suite_name}" + (f" →{self.output_len}" if self.output_len else "")

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update(suite=self.suite_name, output_len=self.output_len)
        return out


def _hash(value: Any) -> str:
    import hashlib

    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


# The random and prefix_repetition options, declared once (engine.workloads.options): the `load` command's
# flags (vLLM's names, as vllm/benchmarks/datasets.py's add_dataset_parser) and the Load form's fields;
# the families (engine.workloads.registry) read them from WorkloadOptions by dest.
from engine.workloads.options import Field, Option, whole  # noqa: E402
from engine.workloads.registry import Family  # noqa: E402

OPTIONS = [
    Option("--random-range-ratio", 'random: lengths uniform in [L(1-R), L(1+R)], R in [0, 1), or {"input": R, '
           '"output": R}', metavar="R", workloads=("random",), section="workload", workload=True,
           field=Field("range ratio", "load-range-ratio", "0", "text", group="opts-random", slot=10)),
    Option("--random-prefix-len", "random: N tokens of one fixed prefix before every prompt", whole(0), metavar="N",
           workloads=("random",), section="workload", workload=True,
           field=Field("prefix len", "load-prefix-len", "0", group="opts-random", slot=10)),
    Option("--prefix-repetition-prefix-len", "prefix_repetition: shared prefix tokens (default 256)", whole(0),
           metavar="N", workloads=("prefix_repetition",), section="workload", workload=True,
           field=Field("prefix", "load-prefix", "256", group="opts-prefix", slot=20)),
    Option("--prefix-repetition-suffix-len", "prefix_repetition: tokens after the prefix (default 256)", whole(0),
           metavar="N", workloads=("prefix_repetition",), section="workload", workload=True,
           field=Field("suffix", "load-suffix", "256", group="opts-prefix", slot=20)),
    Option("--prefix-repetition-num-prefixes", "prefix_repetition: how many prefixes (default 10); num_prompts // N "
           "prompts each", whole(1), metavar="N", workloads=("prefix_repetition",), section="workload",
           workload=True, field=Field("prefixes", "load-prefixes", "10", group="opts-prefix", slot=20)),
    Option("--prefix-repetition-output-len", "prefix_repetition: output tokens (default 128)", whole(1), metavar="N",
           workloads=("prefix_repetition",), section="workload", workload=True),
]


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def build_random(opts: Any, path: str | None, common: dict[str, Any]) -> Workload:
    """--dataset-name random from WorkloadOptions (vLLM's defaults: 128/128, no range, no prefix)."""
    from engine.workloads.conversations import think_time

    return RandomWorkload(opts.input_len or 128, opts.output_len or 128, range_ratio=_or(opts.random_range_ratio, 0.0),
                          prefix_len=opts.random_prefix_len or 0, turns=(opts.turns or 3) if opts.multi_turn else 1,
                          think=think_time(opts), **common)


def build_prefix_repetition(opts: Any, path: str | None, common: dict[str, Any]) -> Workload:
    """--dataset-name prefix_repetition from WorkloadOptions (vLLM's defaults: 256, 256, 10, 128)."""
    if opts.output_len is not None and opts.prefix_repetition_output_len is not None:
        raise BadRequestError("give --output-len or --prefix-repetition-output-len, not both")
    return PrefixRepetitionWorkload(
        _or(opts.prefix_repetition_prefix_len, 256), _or(opts.prefix_repetition_suffix_len, 256),
        _or(opts.prefix_repetition_num_prefixes, 10), _or(opts.output_len, _or(opts.prefix_repetition_output_len, 128)),
        **common)


FAMILIES = [
    Family("random", build_random, slot=10,
           about="token prompts of --input-len (--random-range-ratio, --random-prefix-len)"),
    Family("prefix_repetition", build_prefix_repetition, slot=20,
           about="N shared prefixes (--prefix-repetition-prefix-len/-suffix-len/-num-prefixes)"),
]
