"""Datasets from the user's files: ShareGPT and custom (one prompt per line), read with DuckDB
(engine.workloads.files) and sampled with vLLM 0.32's rules, so the same file and seed give the same
requests as `vllm bench serve`.

ShareGPT (`--dataset-name sharegpt`, vLLM's ShareGPTDataset): entries with fewer than two turns are
dropped; the rest are shuffled with Python's `random` seeded by --seed (`--disable-shuffle` keeps file
order) and taken in that order; an entry's first turn is the prompt and the second's token count
(`len(tokenizer(text).input_ids)`) its output length unless --output-len is given; an entry is skipped
unless prompt >= 4 and output >= 4 tokens, prompt <= 1024 and prompt + output <= 2048
(is_valid_sequence); when too few are left, valid ones are drawn again (`random.choice`, seeded) up to
--num-prompts. tokentop shuffles the list of row numbers, not the rows, and fetches only the rows it
sends — the same order as vLLM's shuffle of the loaded list, without loading the file.
Like vLLM's ShareGPTDataset, single-turn takes the first two turns by position whoever wrote them (the
entries that open with a system or assistant turn are counted and said).

With `--multi-turn` turns are read by role, as vLLM's multi-turn converter reads them
(benchmarks/multi_turn/convert_sharegpt_to_openai.py): `human`/`user` are the user's, `gpt`/`chatgpt`/
`bing`/`bard`/`assistant` the assistant's, `system` a system message. ShareGPT V3 splits long chats into
entries `X_0`, `X_1`, ... (later parts open with `gpt`): parts of one id are merged in file order into one
conversation, a part's first turn dropped when it repeats the previous part's last role (the converter's
rule). Leading system turns become the conversation's system message (the converter drops them: tokentop
sends them, as the chat was had). A conversation that still opens with the assistant loses that turn (the
converter's rule); one where two turns of one role follow each other, a system turn comes mid-way or a
role is unknown is skipped (the converter drops it); a last user turn without a reply is left out. Every
skipped and reshaped conversation is counted and said. Each user turn is sent with the whole history
(engine.workloads.conversations), its reply's length being the output length; a conversation stops at the
first pair that breaks is_valid_sequence or when its context would pass 2048 tokens.

Custom (`--dataset-name custom`, vLLM's CustomDataset): one {"prompt": ..., "output_tokens": N} per line
(JSONL; CSV or Parquet with those columns also read), every row shuffled with --seed and taken in order.
Output length: --output-len, else the row's output_tokens (or GuideLLM's output_tokens_count), else
256 (vLLM uses 256 unless --custom-output-len -1). The prompt goes in the model's chat template as one user message, as
CustomDataset.sample applies it (`tokenizer.apply_chat_template([{"role": "user", ...}],
add_generation_prompt=True)`), unless --skip-chat-template: the request carries it as a message, which
the completions API sends in the template and the chat API as a message (the server applies the template
once; vLLM would send the templated text as a chat message, templating it twice).

A dataset with fewer usable entries than --num-prompts is drawn again (vLLM's oversampling): the run says
how many times over each entry is sent.
"""

from __future__ import annotations

import random
import re
from typing import Any

from engine.workloads.base import LevelSource, Planned, Workload
from engine.workloads.conversations import Conversation, ConversationSource, ThinkTime, Turn
from engine.workloads.files import (
    DatasetFileError,
    custom_count,
    custom_rows,
    file_identity,
    plain,
    resolve,
    sharegpt_index,
    sharegpt_rows,
)
from engine.workloads.tokens import skip_reason

CUSTOM_DEFAULT_OUTPUT_LEN = 256
MAX_TOTAL_LEN = 2048
FETCH_MIN = 64  # rows fetched per query at least (each query scans the file once)


class FileWorkload(Workload):
    """A workload read from a file: resolves and hashes it, shuffles row numbers like vLLM."""

    def __init__(self, path: str, *, disable_shuffle: bool = False, **kw: Any):
        super().__init__(**kw)
        self.path_text = str(path)
        self.disable_shuffle = bool(disable_shuffle)
        self.path = None
        self.file: dict[str, Any] | None = None
        self.order: list[int] = []
        self.total_rows = 0
        self.skipped: dict[str, int] = {}
        self.reshaped: dict[str, int] = {}  # entries sent in another shape than the file's, by reason
        self.read = 0
        self._valid: list[Any] = []  # what the rows read so far gave, in order
        self._cursor = 0  # rows of `order` read so far

    def _open(self) -> None:
        if self.path is None:
            self.path = resolve(self.path_text)
            self.file = file_identity(self.path)

    def _shuffle(self, rows: list[int]) -> list[int]:
        """vLLM: `random.seed(seed); random.shuffle(data)` — a permutation that depends only on the
        length and the seed, so shuffling the row numbers orders the rows exactly as vLLM does."""
        rows = list(rows)
        if not self.disable_shuffle:
            random.Random(self.seed).shuffle(rows)
        return rows

    def _oversample(self, valid: list, n: int) -> list:
        """vLLM's maybe_oversample_requests: `random.seed(seed)`, then random.choice until n."""
        if len(valid) >= n or not valid:
            return valid[:n]
        r = random.Random(self.seed)
        return valid + [r.choice(valid) for _ in range(n - len(valid))]

    def _fill(self, n: int) -> None:
        """Read rows in shuffled order until n are valid or the file is exhausted; each query scans the
        file once and returns only the rows asked for."""
        while len(self._valid) < n and self._cursor < len(self.order):
            want = max(FETCH_MIN, 2 * (n - len(self._valid)))
            batch = self.order[self._cursor:self._cursor + want]
            rows = self._fetch(batch)
            for i in batch:
                self._cursor += 1
                self.read += 1
                item = self._entry(i, rows.get(i))
                if item is not None:
                    self._valid.append(item)
                if len(self._valid) >= n:
                    break

    def _fetch(self, rows: list[int]) -> dict[int, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _entry(self, row: int, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _reshape(self, reason: str) -> None:
        self.reshaped[reason] = self.reshaped.get(reason, 0) + 1

    unit = "entries"

    def reuse_note(self, num_prompts: int | None) -> str | None:
        """Said when --num-prompts asks for more than the file's usable entries (each is sent again)."""
        if num_prompts and self._valid and num_prompts > len(self._valid):
            times = num_prompts / len(self._valid)
            shown = f"{times:,.0f}" if times >= 10 else f"{times:.1f}"
            return (f"only {len(self._valid)} usable {self.unit} for --num-prompts {num_prompts}: each is sent "
                    f"about {shown} times (drawn again as vLLM's oversampling does)")
        return None

    def level_notes(self, num_prompts: int) -> list[str]:
        note = self.reuse_note(num_prompts)
        return [note] if note else []

    def _said(self, max_prompts: int | None) -> None:
        """The notes of preparing: skipped, reshaped, a file cut short, reuse."""
        for note in (self.skip_note(), self.reshape_note(), self.reuse_note(max_prompts)):
            if note:
                self.notes.append(note)

    def _taken(self) -> str:
        return f"{len(self._valid)} taken" if self.unit == "entries" else f"{len(self._valid)} {self.unit} taken"

    def reshape_note(self) -> str | None:
        if not self.reshaped:
            return None
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reshaped.items(), key=lambda kv: -kv[1]))
        return f"{self.file_identity()['name']}: {self.unit} reshaped: {why}"

    def file_identity(self) -> dict[str, Any] | None:
        return dict(self.file) if self.file else {"name": self.path_text.rsplit("/", 1)[-1]}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.total_rows, "read": self.read,
                               "skipped": sum(self.skipped.values()), "skipped_by_reason": dict(self.skipped)}
        if self.reshaped:
            out["reshaped_by_reason"] = dict(self.reshaped)
        return out

    def skip_note(self) -> str | None:
        if not self.skipped:
            return None
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        return (f"{self.file_identity()['name']}: {self.total_rows} entries, {self._taken()}, "
                f"skipped {sum(self.skipped.values())} ({why})")

    def label(self) -> str:
        f = self.file_identity() or {}
        digest = f"#{f['sha256'][:6]}" if f.get("sha256") else ""
        return f"{self.kind} {f.get('name', '?')}{digest}" + self._label_extra()

    def _label_extra(self) -> str:
        return f" →{self.output_len}" if self.output_len else ""


# vLLM's multi-turn converter (benchmarks/multi_turn/convert_sharegpt_to_openai.py) maps these; "user"
# and "assistant" are the OpenAI names some ShareGPT-shaped files use.
USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "chatgpt", "bing", "bard", "assistant"})
SYSTEM_ROLES = frozenset({"system"})
_PART = re.compile(r"^(.+)_(\d+)$")  # ShareGPT V3's split conversations: "<id>_<part>"


def role_of(name: str | None) -> str | None:
    """'user', 'assistant' or 'system' for a ShareGPT "from" (case-insensitive), None when unknown."""
    key = (name or "").strip().lower()
    if key in USER_ROLES:
        return "user"
    if key in ASSISTANT_ROLES:
        return "assistant"
    if key in SYSTEM_ROLES:
        return "system"
    return None


class ShareGPTWorkload(FileWorkload):
    kind = "sharegpt"
    needs_tokenizer = True

    def __init__(self, path: str, output_len: int | None = None, *, multi_turn: bool = False,
                 max_turns: int | None = None, think: ThinkTime | None = None, **kw: Any):
        super().__init__(path, output_len=output_len, **kw)
        self.multi_turn = bool(multi_turn)
        self.max_turns = max_turns
        self.think = think or ThinkTime()
        self.truncated = 0
        self.cut_bytes = 0  # the file is a list cut short mid-entry: the bytes of the cut entry
        self.streamed = False
        self.groups: list[tuple[int, ...]] = []  # the rows of each unit sampled (an entry; multi-turn: a conversation)
        self._short: int = 0
        self.unit = "conversations" if self.multi_turn else "entries"

    def check(self) -> None:
        self._open()
        if self.order:
            return
        index = sharegpt_index(self.path)
        self.total_rows, self.cut_bytes, self.streamed = index.total, index.cut_bytes, index.streamed
        if self.multi_turn:
            self.groups = _conversations(index.entries)
            sizes = [sum(index.entries[i][1] or 0 for i in g) for g in self.groups]
        else:  # vLLM's ShareGPTDataset: each entry alone
            self.groups = [(i,) for i in range(index.total)]
            sizes = [n or 0 for _, n in index.entries]
        keep = [g for g, n in enumerate(sizes) if n >= 2]
        if not keep:
            raise DatasetFileError(f"dataset {self.path.name}: no entry has two or more turns (a prompt and a "
                                   "reply); vLLM's ShareGPT reader needs both")
        self._short = len(self.groups) - len(keep)
        self.order = self._shuffle(keep)

    def _prepare(self, tokens, max_prompts: int | None) -> None:
        self.check()
        if self._short:
            self.skipped["fewer than 2 turns"] = self._short
        if self.cut_bytes:
            self.notes.append(f"{self.path.name} ends mid-entry (a JSON list cut short): its {self.total_rows} "
                              f"complete entries are read, the cut one ({self.cut_bytes} bytes) is left out")
        self._fill(max_prompts or 1)
        if not self._valid:
            raise DatasetFileError(f"dataset {self.path.name}: every entry was skipped by vLLM's length rules "
                                   f"({self._reasons()}); try --output-len")
        self._said(max_prompts)
        if self.truncated:
            self.notes.append(f"{self.truncated} conversation(s) cut short where a turn broke the length rules "
                              f"or the context would pass {MAX_TOTAL_LEN} tokens")

    def _reasons(self) -> str:
        return ", ".join(f"{n} {r}" for r, n in self.skipped.items()) or "none read"

    def _count(self, text: str) -> int:
        return self.tokens.count(text)

    def _fetch(self, groups: list[int]) -> dict[int, Any]:
        rows = sharegpt_rows(self.path, sorted(i for g in groups for i in self.groups[g]), streamed=self.streamed)
        return {g: [rows.get(i) or [] for i in self.groups[g]] for g in groups}

    def _entry(self, group: int, parts: list[list[tuple[str | None, str | None]]] | None):
        """(prompt, prompt tokens, output tokens), or a Conversation's (turns, system) with --multi-turn;
        None: skipped."""
        parts = parts or []
        if self.multi_turn:
            return self._conversation(parts)
        turns = parts[0] if parts else []
        if len(turns) < 2:
            self._skip("fewer than 2 turns")
            return None
        prompt, completion = turns[0][1], turns[1][1]
        if prompt is None or completion is None:
            self._skip("a turn without text")
            return None
        prompt_len = self._count(prompt)
        out_len = self._count(completion) if self.output_len is None else self.output_len
        why = skip_reason(prompt_len, out_len, skip_min_output_len_check=self.output_len is not None)
        if why:
            self._skip(why)
            return None
        if role_of(turns[0][0]) != "user":
            first = {"assistant": "an assistant", "system": "a system"}.get(role_of(turns[0][0]) or "", "a non-user")
            self._reshape(f"open with {first} turn, sent as the prompt by position as vLLM's ShareGPTDataset "
                          "does (--multi-turn reads roles)")
        return (prompt, prompt_len, out_len)

    def _conversation(self, parts: list[list[tuple[str | None, str | None]]]):
        """A conversation read by role (see the module docstring): (turns, system) or None (skipped)."""
        merged: list[tuple[str, str | None]] = []
        dropped_at_joins = 0
        roleless = all(who is None for part in parts for who, _ in part)
        if roleless:  # no turn says who wrote it (AIPerf's loader tests): alternate, the user first
            parts = [[("human" if k % 2 == 0 else "gpt", text) for k, (_, text) in enumerate(sum(parts, []))]]
            self._reshape("no roles: read by position, the user first")
        for part in parts:
            mapped = []
            for who, text in part:
                role = role_of(who)
                if role is None:
                    self._skip(f"an unknown role ({plain(who, 20)!r})" if who else "a turn without a role")
                    return None
                mapped.append((role, text))
            if merged and mapped and merged[-1][0] == mapped[0][0]:
                mapped, dropped_at_joins = mapped[1:], dropped_at_joins + 1
            merged.extend(mapped)
        if len(parts) > 1:
            self._reshape("merged from split parts (X_0, X_1, ...)")
        if dropped_at_joins:
            self._reshape("had a part's first turn dropped (the role the previous part ended with)")
        system_texts = []
        while merged and merged[0][0] == "system":
            system_texts.append(merged.pop(0)[1] or "")
        if system_texts:
            self._reshape("a system turn sent as the system message")
        if merged and merged[0][0] == "assistant":
            merged.pop(0)
            self._reshape("opened with the assistant: that turn dropped")
        if any(role == "system" for role, _ in merged):
            self._skip("a system turn mid-conversation")
            return None
        if any(a[0] == b[0] for a, b in zip(merged, merged[1:])):
            self._skip("two turns of one role in a row")
            return None
        if merged and merged[-1][0] == "user":
            merged.pop()
            self._reshape("a last user turn without a reply: left out")
        if len(merged) < 2:
            self._skip("no user turn with a reply")
            return None
        if any(text is None for _, text in merged):
            self._skip("a turn without text")
            return None
        system = "\n\n".join(t for t in system_texts if t) or None
        sys_len = self._count(system) if system else 0
        prompt, completion = merged[0][1], merged[1][1]
        prompt_len = sys_len + self._count(prompt)
        out_len = self._count(completion) if self.output_len is None else self.output_len
        why = skip_reason(prompt_len, out_len, skip_min_output_len_check=self.output_len is not None)
        if why:
            self._skip(why)
            return None
        conv = [Turn(prompt, out_len)]
        context = prompt_len + out_len
        limit = self.max_turns or len(merged)
        for k in range(2, len(merged) - 1, 2):
            if len(conv) >= limit:
                break
            user, reply = merged[k][1], merged[k + 1][1]
            u_len = self._count(user)
            o_len = self._count(reply) if self.output_len is None else self.output_len
            if skip_reason(u_len, o_len, skip_min_output_len_check=self.output_len is not None) or \
                    context + u_len + o_len > MAX_TOTAL_LEN:
                self.truncated += 1
                break
            conv.append(Turn(user, o_len))
            context += u_len + o_len
        return (tuple(conv), system)

    def default_num_prompts(self) -> int | None:
        return None

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        self._fill(num_prompts)
        chosen = self._oversample(self._valid, num_prompts)
        if self.multi_turn:
            return ConversationSource([Conversation(c, turns, system) for c, (turns, system) in enumerate(chosen)],
                                      self.request_maker(), self.think, self.seed)
        return LevelSource([Planned(self.request(p, out, i, input_len=plen))
                            for i, (p, plen, out) in enumerate(chosen)])

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"output_len": self.output_len, "shuffle": not self.disable_shuffle,
                               "temperature": self.temperature, "ignore_eos": self.enforce_length}
        if self.multi_turn:
            out.update(multi_turn=True, max_turns=self.max_turns, **self.think.to_json())
        return out

    def _label_extra(self) -> str:
        """' multi-turn', its turn limit and think time: two multi-turn loads of one file differ here."""
        if not self.multi_turn:
            return super()._label_extra()
        limit = f" ≤{self.max_turns} turns" if self.max_turns else ""
        return super()._label_extra() + f" multi-turn{limit}{self.think.label()}"

    def report(self) -> dict[str, Any]:
        out = super().report()
        if self.multi_turn:
            out["truncated_conversations"] = self.truncated
            out["conversations"] = len(self.groups)
        if self.cut_bytes:
            out["cut_entries"] = 1
            out["cut_bytes"] = self.cut_bytes
        return out


def _conversations(entries: list[tuple[str | None, int | None]]) -> list[tuple[int, ...]]:
    """The rows of each conversation, in file order: entries whose ids are `<id>_<part>` with one <id> are
    one conversation (parts in file order, as vLLM's converter assumes them; ShareGPT V3 keeps them in
    order and together); any other entry is a conversation of its own."""
    by_id: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, (ident, _n) in enumerate(entries):
        m = _PART.match(ident) if ident else None
        if m is None:
            out.append([i])
            continue
        rows = by_id.get(m.group(1))
        if rows is None:
            rows = by_id[m.group(1)] = []
            out.append(rows)
        rows.append(i)
    return [tuple(rows) for rows in out]


class CustomWorkload(FileWorkload):
    kind = "custom"

    def __init__(self, path: str, output_len: int | None = None, *, skip_chat_template: bool = False, **kw: Any):
        super().__init__(path, output_len=output_len, **kw)
        self.has_output_tokens = False
        self.skip_chat_template = bool(skip_chat_template)
        self.templated = False  # prompts go as a user message in the chat template (decided in _prepare)

    def check(self) -> None:
        self._open()
        if not self.order:
            self.total_rows, self.has_output_tokens = custom_count(self.path)
            self.order = self._shuffle(list(range(self.total_rows)))

    def _prepare(self, tokens, max_prompts: int | None) -> None:
        self.check()
        self._fill(max_prompts or 1)
        if not self._valid:
            raise DatasetFileError(f"dataset {self.path.name}: no row has a non-empty 'prompt'")
        if self.skip_chat_template:
            self.notes.append("--skip-chat-template: custom prompts sent as they are (the chat API wraps a "
                              "message in the template whatever is asked)")
        elif tokens is None:
            self.notes.append("no tokenizer for this model: custom prompts go without the chat template on the "
                              "completions API (vLLM's CustomDataset applies it; pass --tokenizer)")
        elif not tokens.has_chat_template:
            self.notes.append("the model has no chat template: custom prompts are sent as they are")
        else:
            self.templated = True
            self.notes.append("custom prompts go in the model's chat template, as vLLM's CustomDataset sends "
                              "them (--skip-chat-template sends them as they are)")
        self._said(max_prompts)

    def _fetch(self, rows: list[int]) -> dict[int, Any]:
        return custom_rows(self.path, rows)

    def _entry(self, row: int, value: tuple[str | None, str | None] | None):
        prompt, out = value or (None, None)
        if not prompt:
            self._skip("empty prompt")
            return None
        return (prompt, self._output_len(out, row))

    def _output_len(self, text: str | None, row: int) -> int:
        if self.output_len:
            return self.output_len
        if text is None or text == "":
            return CUSTOM_DEFAULT_OUTPUT_LEN
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value >= 1 and value == int(value):
            return int(value)
        raise DatasetFileError(f"dataset {self.path.name}: row {row + 1}: output_tokens must be a whole number >= 1 "
                               f"(got {plain(text, 40)!r})")

    def _custom_request(self, prompt: str, out: int, i: int):
        """A templated prompt is one user message (the engine applies the template: the completions API
        as text, vLLM's way); --skip-chat-template sends the text, and its ids to the in-process engine."""
        if self.templated:
            return self.request(prompt, out, i, messages=(("user", prompt),))
        if self.skip_chat_template and self.tokens is not None:
            return self.request(prompt, out, i, prompt_token_ids=tuple(self.tokens.encode(prompt, special=True)))
        return self.request(prompt, out, i)

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        self._fill(num_prompts)
        if not self._valid:
            raise DatasetFileError(f"dataset {self.path.name}: no row has a non-empty 'prompt'")
        chosen = self._oversample(self._valid, num_prompts)
        return LevelSource([Planned(self._custom_request(p, out, i)) for i, (p, out) in enumerate(chosen)])

    def params(self) -> dict[str, Any]:
        out = {"output_len": self.output_len, "shuffle": not self.disable_shuffle,
               "temperature": self.temperature, "ignore_eos": self.enforce_length}
        if self.skip_chat_template:
            out["skip_chat_template"] = True
        return out

    def _label_extra(self) -> str:
        return super()._label_extra() + (" no template" if self.skip_chat_template else "")


# The sharegpt and custom options, declared once (engine.workloads.options; vLLM's names), and the two
# families that read them (engine.workloads.registry).
from engine.workloads.options import Field, Option  # noqa: E402
from engine.workloads.registry import Family  # noqa: E402

OPTIONS = [
    Option("--disable-shuffle", "sharegpt/custom: keep the file's order", store_true=True, default=False,
           workloads=("sharegpt", "custom"), section="workload", workload=True),
    Option("--skip-chat-template", "custom: send prompts without the chat template (vLLM's)", store_true=True,
           default=False, workloads=("custom",), section="workload", workload=True,
           refusal="is for --dataset-name custom (the only dataset sent in the chat template)",
           field=Field("skip chat template", "load-skip-chat-template", widget="check", group="opts-custom",
                       slot=30)),
]


def build_sharegpt(opts: Any, path: str | None, common: dict[str, Any]) -> Workload:
    """--dataset-name sharegpt FILE from WorkloadOptions."""
    from engine.workloads.conversations import think_time

    return ShareGPTWorkload(str(path), opts.output_len, multi_turn=opts.multi_turn, max_turns=opts.max_turns,
                            think=think_time(opts), disable_shuffle=opts.disable_shuffle, **common)


def build_custom(opts: Any, path: str | None, common: dict[str, Any]) -> Workload:
    """--dataset-name custom FILE from WorkloadOptions."""
    return CustomWorkload(str(path), opts.output_len, disable_shuffle=opts.disable_shuffle,
                          skip_chat_template=bool(opts.skip_chat_template), **common)


FAMILIES = [
    Family("sharegpt", build_sharegpt, reads_file=True, slot=30,
           about="ShareGPT JSON, vLLM's sampling and length rules (--multi-turn: whole chats)"),
    Family("custom", build_custom, reads_file=True, slot=40,
           about='JSONL, one {"prompt": ..., "output_tokens": N} per line'),
]
