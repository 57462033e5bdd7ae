"""What every workload is: a source of GenerationRequests with send times, never a driver of its own.

The load runner (engine/load/runner.py) asks a workload, per level, for a `LevelSource`:

  * `initial()`: the requests the level starts with, each optionally with its own send time (`at_s`,
    seconds after the level's start: a trace's timestamps). Requests without one go out on the level's
    pattern (all at once under --max-concurrency, or Poisson/gamma arrivals at --request-rate);
  * `follow_up(request, record)`: called on the engine loop when a request has finished, it may return
    the next request to send after a delay (a conversation's next turn, which carries the reply just
    received). Must be cheap: it runs where tokens are timestamped.

A workload is checked before the engine starts (`check`: settings, the dataset file), prepared once the
engine's tokenizer is known (`prepare`: sampling, token ids), and says what it is (`identity`: stored
with every run so runs on different workloads are never averaged together).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from engine.types import BadRequestError, GenerationRequest, RequestRecord
from engine.workloads.tokens import Tokens

DEFAULT_TEMPERATURE = 0.8
# Identity fields that do not change what is measured, so two runs that differ only in them are on one
# workload: the seed (another draw from the same distribution), the label, and the key itself.
NOT_IN_KEY = ("seed", "label", "key", "report", "tokenizer")


@dataclass(frozen=True)
class Planned:
    """A request and, for self-timed workloads, when to send it (seconds after the level's start)."""

    request: GenerationRequest
    at_s: float | None = None


@dataclass(frozen=True)
class FollowUp:
    """The next request of a conversation, sent `delay_s` after the previous reply finished."""

    request: GenerationRequest
    delay_s: float = 0.0


class LevelSource:
    """One level's requests: a fixed list (open loop), which subclasses extend with follow-ups."""

    def __init__(self, planned: list[Planned]):
        self._planned = list(planned)

    def initial(self) -> list[Planned]:
        return list(self._planned)

    def follow_up(self, request: GenerationRequest, record: RequestRecord) -> FollowUp | None:
        """The request to send after `request` finished (None: nothing follows). Runs on the engine loop."""
        return None

    def share(self, positions: Sequence[int]) -> "LevelSource":
        """The part of this level a client process drives (engine.load.pool): the requests at
        `positions` of initial(), in that order, with their follow-ups. Picklable (it crosses to the
        process). A source with follow-ups overrides it (conversations: whole conversations)."""
        if type(self).follow_up is not LevelSource.follow_up:
            raise NotImplementedError(f"{type(self).__name__} has follow-ups but cannot be shared among processes")
        return LevelSource([self._planned[i] for i in positions])

    @property
    def total(self) -> int:
        """Requests this level sends when every conversation runs its course."""
        return len(self._planned)

    def planned_lengths(self) -> list[int | None]:
        """Every request's output length (tokens) when it is enforced, else None: the first requests in
        order, then (conversations) their follow-ups, turn after turn. len() == total."""
        return [p.request.max_tokens if p.request.enforce_length else None for p in self._planned]


class Workload(ABC):
    """A source of requests for load levels and suites (see the module docstring)."""

    kind: str = "?"
    self_timed: bool = False  # requests carry their own send times (traces)
    needs_tokenizer: bool = False

    def __init__(self, *, output_len: int | None = None, temperature: float = DEFAULT_TEMPERATURE,
                 seed: int = 0, enforce_length: bool = True):
        self.output_len = output_len
        self.temperature = temperature
        self.seed = seed
        self.enforce_length = enforce_length
        self.tokens: Tokens | None = None
        self._prepared = False
        self.notes: list[str] = []  # what a user should know (skipped entries, approximate lengths)

    # -- life cycle ---------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the settings and the dataset file, before the engine starts. BadRequestError (one
        line naming the file and what is wrong) when they cannot work."""

    def prepare(self, tokens: Tokens | None, max_prompts: int | None = None) -> None:
        """Once per run, after the engine started: sample and build prompts. `max_prompts` is the most
        any level will ask for. BadRequestError when the workload cannot run with this tokenizer."""
        if self._prepared:
            return
        if self.needs_tokenizer and tokens is None:
            raise BadRequestError(
                f"the {self.kind} workload builds prompts from token ids and needs the model's tokenizer: "
                "pass --tokenizer PATH (a local model folder, or a model id in the Hugging Face cache)")
        self.tokens = tokens
        self._prepare(tokens, max_prompts)
        self._prepared = True

    def _prepare(self, tokens: Tokens | None, max_prompts: int | None) -> None:
        pass

    @abstractmethod
    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        """The requests of one level of `num_prompts` requests (conversations, when multi-turn)."""

    def requests(self, num_prompts: int, level_index: int = 0) -> list[GenerationRequest]:
        """The level's first requests, in order (suites, scripts, tests). Prepares without a tokenizer
        when nobody prepared the workload yet."""
        if not self._prepared:
            self.prepare(None, num_prompts)
        return [p.request for p in self.level(num_prompts, level_index).initial()]

    def default_num_prompts(self) -> int | None:
        """Requests per level when the user gives no --num-prompts (None: the load's default)."""
        return None

    # -- what a level will send (progress, ETA, the stored plan) --------------------------------
    def planned_lengths(self, num_prompts: int) -> list[int | None]:
        """Each request a level of `num_prompts` will send, follow-up turns included, as its enforced
        output length in tokens (None where unknown before it runs): progress and ETA count these
        (engine.measure.progress). A prepared workload builds the level (cheap: samples are cached);
        before that, one unknown length per prompt. Cached per num_prompts (the app asks on every redraw)."""
        if self._prepared:
            cache = self.__dict__.setdefault("_planned_lengths", {})
            if num_prompts not in cache:
                try:
                    cache[num_prompts] = self.level(num_prompts).planned_lengths()
                except BadRequestError:
                    cache[num_prompts] = None
            if cache[num_prompts] is not None:
                return list(cache[num_prompts])
        length = self.output_len if self.enforce_length and self.output_len else None
        return [int(length) if length else None] * max(0, int(num_prompts))

    def planned_count(self, num_prompts: int) -> int:
        """Requests a level of `num_prompts` sends, every conversation's every turn included (fewer than
        num_prompts where a workload's rule drops some: prefix_repetition)."""
        return len(self.planned_lengths(num_prompts))

    def level_notes(self, num_prompts: int) -> list[str]:
        """What a user should know about a level of `num_prompts` (requests a rule drops, a dataset sent
        many times over): said when the level starts and stored with it."""
        return []

    def level_report(self, num_prompts: int) -> dict[str, Any]:
        """Stored with each level (its summary's "workload"): --num-prompts, the requests planned
        (planned_count: follow-up turns included, dropped ones not) and the level's notes."""
        out: dict[str, Any] = {"num_prompts": int(num_prompts), "planned_requests": self.planned_count(num_prompts)}
        notes = self.level_notes(num_prompts)
        if notes:
            out["level_notes"] = notes
        return out

    def check_num_prompts(self, num_prompts: int) -> None:
        """Whether a level of `num_prompts` can run, checked with `check` before the engine starts
        (data.jobs.load.load_spec): BadRequestError, one line, when it cannot (a trace: more requests
        than it holds). Default: any number."""

    # -- identity -----------------------------------------------------------------------------
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Sampling and length parameters (what shapes the requests), for the identity."""

    def file_identity(self) -> dict[str, Any] | None:
        return None

    @abstractmethod
    def label(self) -> str:
        """A short human name: 'random 128→128', 'sharegpt sg.json#1a2b3c'."""

    def identity(self) -> dict[str, Any]:
        """What this workload is, as stored with every run: kind, file (name, content hash, size),
        sampling and length parameters, seed, a label and a key (runs with equal keys ran the same
        workload; the seed is left out of the key)."""
        ident: dict[str, Any] = {"kind": self.kind, "params": self.params(), "seed": self.seed}
        file = self.file_identity()
        if file:
            ident["file"] = file
        if self.tokens is not None:
            ident["tokenizer"] = self.tokens.source
        ident["label"] = self.label()
        ident["key"] = workload_key(ident)
        return ident

    def to_json(self) -> dict[str, Any]:
        """The stored settings of a load run (suite_json["prompts"]): the identity plus what was found."""
        out = self.identity()
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def report(self) -> dict[str, Any]:
        """What preparing found (entries read, skipped and why), for the run's summary."""
        return {}

    def request(self, prompt: str, max_tokens: int, index: int, **extra: Any) -> GenerationRequest:
        """A request with this workload's sampling settings (no per-request seed: vLLM's bench sends none)."""
        return self.request_maker()(prompt, max_tokens, index, **extra)

    def request_maker(self) -> "RequestMaker":
        """`request` as a small picklable object (what a conversation builds its next turns with, also in
        a client process)."""
        return RequestMaker(self.temperature, self.enforce_length, self.kind)


@dataclass(frozen=True)
class RequestMaker:
    """Makes a workload's requests: its sampling settings, nothing else (picklable, cheap to send)."""

    temperature: float
    enforce_length: bool
    case_id: str

    def __call__(self, prompt: str, max_tokens: int, index: int, **extra: Any) -> GenerationRequest:
        return GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=self.temperature,
                                 enforce_length=self.enforce_length, seed=None, case_id=self.case_id, rep=index,
                                 **extra)


def workload_key(identity: dict[str, Any]) -> str:
    """12 hex digits naming a workload: a hash of its identity without the seed (NOT_IN_KEY)."""
    core = {k: v for k, v in identity.items() if k not in NOT_IN_KEY}
    text = json.dumps(core, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]
