"""Multi-turn conversations: each simulated user keeps its chat history and sends its next turn with
the whole history, after a think time, once the previous reply has come back.

A conversation is a list of user turns (text and the output length asked for), with an optional system
message (a ShareGPT `system` turn) that opens the history of every turn. Its first turn goes out
on the level's pattern; every later turn is a follow-up (engine.workloads.base.LevelSource.follow_up)
built on the engine loop from the reply just received: history = every earlier user message and the
model's actual replies, then the new user message. The think time between a reply and the next turn is
`--turn-delay-ms`, fixed or drawn from an exponential distribution with that mean (seeded per
conversation and turn, so a replay waits the same). A failed turn ends its conversation. Each request
carries its conversation id and turn index (stored per request), so TTFT per turn — which grows with
the context — can be read from any run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.types import BadRequestError, GenerationRequest, RequestRecord
from engine.workloads.base import FollowUp, LevelSource, Planned
from engine.workloads.tokens import stable_int

DELAY_DISTRIBUTIONS = ("fixed", "exponential")


@dataclass(frozen=True)
class Turn:
    text: str  # the user's message
    output_len: int  # tokens asked of the reply


@dataclass(frozen=True)
class Conversation:
    id: int
    turns: tuple[Turn, ...]
    system: str | None = None  # sent as the system message before the first user turn (chat template's)


@dataclass(frozen=True)
class ThinkTime:
    """The pause between a reply and the user's next turn (`--turn-delay-ms`, `--turn-delay-dist`)."""

    mean_ms: float = 0.0
    distribution: str = "fixed"

    def __post_init__(self) -> None:
        if self.distribution not in DELAY_DISTRIBUTIONS:
            raise BadRequestError(f"--turn-delay-dist {self.distribution!r} must be fixed or exponential")
        if not (self.mean_ms >= 0) or self.mean_ms == float("inf"):
            raise BadRequestError(f"--turn-delay-ms must be 0 or more milliseconds (got {self.mean_ms:g})")

    def seconds(self, seed: int, conversation: int, turn: int) -> float:
        if self.mean_ms <= 0:
            return 0.0
        if self.distribution == "fixed":
            return self.mean_ms / 1000.0
        rng = np.random.default_rng(stable_int("think", seed, conversation, turn))
        return float(rng.exponential(self.mean_ms / 1000.0))

    def to_json(self) -> dict[str, Any]:
        return {"turn_delay_ms": self.mean_ms, "turn_delay_dist": self.distribution}

    def label(self) -> str:
        """For a workload's label: '' (no think time), ' think 500ms', ' think ~500ms' (exponential, mean)."""
        if self.mean_ms <= 0:
            return ""
        return f" think {'~' if self.distribution == 'exponential' else ''}{self.mean_ms:g}ms"


class ConversationSource(LevelSource):
    """One level of conversations: their first turns, and each next turn as a follow-up."""

    def __init__(self, conversations: Sequence[Conversation], make_request, think: ThinkTime, seed: int = 0):
        """make_request(text, output_len, index, **fields) -> GenerationRequest (the workload's settings)."""
        self.conversations = {c.id: c for c in conversations}
        self.make_request = make_request
        self.think = think
        self.seed = seed
        super().__init__([Planned(self._turn(c, 0, ())) for c in conversations if c.turns])

    def _turn(self, conv: Conversation, t: int, history: tuple[tuple[str, str], ...]) -> GenerationRequest:
        turn = conv.turns[t]
        if t == 0 and conv.system:
            history = (("system", conv.system),)
        messages = history + (("user", turn.text),)
        return self.make_request(turn.text, turn.output_len, t, messages=messages, conversation_id=conv.id,
                                 turn=t)

    def follow_up(self, request: GenerationRequest, record: RequestRecord) -> FollowUp | None:
        conv = self.conversations.get(request.conversation_id) if request.conversation_id is not None else None
        t = (request.turn or 0) + 1
        if conv is None or t >= len(conv.turns) or not record.success:
            return None
        history = tuple(request.messages or (("user", request.prompt),)) + (("assistant", record.text),)
        return FollowUp(self._turn(conv, t, history), self.think.seconds(self.seed, conv.id, t))

    def share(self, positions: Sequence[int]) -> "ConversationSource":
        """Whole conversations for a client process: those whose first turns are at `positions` of
        initial(), in that order (picklable when make_request is, e.g. a workload's request_maker())."""
        firsts = self.initial()
        chosen = [self.conversations[firsts[i].request.conversation_id] for i in positions]  # type: ignore[index]  # a first turn has its id
        return ConversationSource(chosen, self.make_request, self.think, self.seed)

    @property
    def total(self) -> int:
        return sum(len(c.turns) for c in self.conversations.values())

    def planned_lengths(self) -> list[int | None]:
        """Every turn's output length (enforced by the workload's requests, else None): the first turns in
        order, then every conversation's second turn, and so on (the order follow-ups tend to go out)."""
        convs = list(self.conversations.values())
        enforced = bool(self._planned) and self._planned[0].request.enforce_length
        depth = max((len(c.turns) for c in convs), default=0)
        return [c.turns[t].output_len if enforced else None for t in range(depth) for c in convs if t < len(c.turns)]


def ttft_by_turn(records: Sequence[RequestRecord]) -> dict[str, dict[str, float]]:
    """TTFT per turn index over the successful requests of a level: {"0": {"n", "mean_ms", "p50_ms",
    "p99_ms", "mean_input_tokens"}, ...} (numpy linear percentiles, vLLM's). Empty for single-turn runs."""
    by_turn: dict[int, list[RequestRecord]] = {}
    for r in records:
        turn = getattr(r.request, "turn", None)
        if turn is not None and r.success and r.chunk_ns:
            by_turn.setdefault(int(turn), []).append(r)
    out: dict[str, dict[str, float]] = {}
    for turn in sorted(by_turn):
        rs = by_turn[turn]
        ttfts = np.asarray([(r.chunk_ns[0] - r.st_ns) / 1e6 for r in rs])
        inputs = [r.input_tokens for r in rs if r.input_tokens is not None]
        out[str(turn)] = {"n": len(rs), "mean_ms": float(ttfts.mean()), "p50_ms": float(np.percentile(ttfts, 50)),
                          "p99_ms": float(np.percentile(ttfts, 99)),
                          "mean_input_tokens": float(np.mean(inputs)) if inputs else None}  # type: ignore[dict-item]
    return out


# The multi-turn options, declared once (engine.workloads.options; vLLM's names). The form reads them its
# own way: random's "turns" above 1 means multi-turn; think time "500" is fixed, "exp 500" exponential.
from engine.workloads.options import Field, Option, number, whole  # noqa: E402


def _form_turns(opt: Option, text: str) -> dict[str, Any]:
    n = opt.parse(text)
    return {"multi_turn": True, "turns": n} if n > 1 else {}


def _form_think(opt: Option, text: str) -> dict[str, Any]:
    """'500' (fixed, ms) or 'exp 500' / 'exp:500' (exponential with that mean)."""
    text, dist = text.lower(), "fixed"
    for mark in ("exp:", "exp ", "exp"):
        if text.startswith(mark):
            dist, text = "exponential", text[len(mark):].strip()
            break
    return {"turn_delay_ms": opt.parse(text) if text else None, "turn_delay_dist": dist}


def think_time(opts: Any) -> ThinkTime:
    """The think time WorkloadOptions ask for (--turn-delay-ms, --turn-delay-dist; 0 and fixed if not given)."""
    return ThinkTime(float(opts.turn_delay_ms or 0.0), opts.turn_delay_dist or "fixed")


_BOTH = ("sharegpt", "random")
OPTIONS = [
    Option("--multi-turn", "each simulated user sends every next turn with the whole chat so far (sharegpt: the "
           "file's turns; random: --turns messages)", store_true=True, default=False, workloads=_BOTH,
           section="multi-turn", workload=True, refusal="works with --dataset-name sharegpt or random",
           field=Field("multi-turn", "load-multi-turn", widget="check", group="opts-sharegpt", slot=40,
                       workloads=("sharegpt",))),
    Option("--turns", "random --multi-turn: turns per user (default 3)", whole(1), workloads=("random",),
           section="multi-turn", workload=True, needs="multi_turn",
           refusal="is for --dataset-name random (a ShareGPT conversation has its own turns)",
           field=Field("turns", "load-turns", "1", group="opts-random", slot=10, read=_form_turns)),
    Option("--max-turns", "sharegpt --multi-turn: at most N turns", whole(1), workloads=("sharegpt",),
           section="multi-turn", workload=True, needs="multi_turn",
           refusal="is for --dataset-name sharegpt --multi-turn (random uses --turns)",
           field=Field("max turns", "load-max-turns", "all", group="opts-sharegpt", slot=40, needs="multi_turn")),
    Option("--turn-delay-ms", "think time between a reply and the next turn (default 0)", number(), metavar="MS",
           workloads=_BOTH, section="multi-turn", workload=True, needs="multi_turn",
           field=Field("think ms", "load-think", "0", "text", group="opts-think", slot=60, needs="multi_turn",
                       read=_form_think)),
    Option("--turn-delay-dist", "think time fixed, or exponential with mean --turn-delay-ms",
           choices=("fixed", "exponential"), workloads=_BOTH, section="multi-turn", workload=True,
           needs="multi_turn"),
]
