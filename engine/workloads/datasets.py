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
With `--multi-turn` each entry is a conversation: every human turn is sent with the whole history
(engine.workloads.conversations), its reply's length being the output length; a conversation stops at
the first pair that breaks is_valid_sequence or when its context would pass 2048 tokens.

Custom (`--dataset-name custom`, vLLM's CustomDataset): one {"prompt": ..., "output_tokens": N} per line
(JSONL; CSV or Parquet with those columns also read), every row shuffled with --seed and taken in order.
Output length: --output-len, else the row's output_tokens, else 256 (vLLM uses 256 unless
--custom-output-len -1).
"""

from __future__ import annotations

import random
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

    def file_identity(self) -> dict[str, Any] | None:
        return dict(self.file) if self.file else {"name": self.path_text.rsplit("/", 1)[-1]}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.total_rows, "read": self.read,
                               "skipped": sum(self.skipped.values()), "skipped_by_reason": dict(self.skipped)}
        return out

    def skip_note(self) -> str | None:
        if not self.skipped:
            return None
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        return (f"{self.file_identity()['name']}: {self.total_rows} entries, {len(self._valid)} taken, "
                f"skipped {sum(self.skipped.values())} ({why})")

    def label(self) -> str:
        f = self.file_identity() or {}
        digest = f"#{f['sha256'][:6]}" if f.get("sha256") else ""
        return f"{self.kind} {f.get('name', '?')}{digest}" + self._label_extra()

    def _label_extra(self) -> str:
        return f" →{self.output_len}" if self.output_len else ""


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
        self._skip_count_short = 0

    def check(self) -> None:
        self._open()
        if not self.order:
            self.total_rows, keep = sharegpt_index(self.path)
            if not keep:
                raise DatasetFileError(f"dataset {self.path.name}: no entry has two or more turns (a prompt and a "
                                       "reply); vLLM's ShareGPT reader needs both")
            self._skip_count_short = self.total_rows - len(keep)
            self.order = self._shuffle(keep)

    def _prepare(self, tokens, max_prompts: int | None) -> None:
        self.check()
        if self._skip_count_short:
            self.skipped["fewer than 2 turns"] = self._skip_count_short
        self._fill(max_prompts or 1)
        if not self._valid:
            raise DatasetFileError(f"dataset {self.path.name}: every entry was skipped by vLLM's length rules "
                                   f"({self._reasons()}); try --output-len")
        note = self.skip_note()
        if note:
            self.notes.append(note)
        if self.truncated:
            self.notes.append(f"{self.truncated} conversation(s) cut short where a turn broke the length rules "
                              f"or the context would pass {MAX_TOTAL_LEN} tokens")

    def _reasons(self) -> str:
        return ", ".join(f"{n} {r}" for r, n in self.skipped.items()) or "none read"

    def _count(self, text: str) -> int:
        return self.tokens.count(text)

    def _fetch(self, rows: list[int]) -> dict[int, Any]:
        return sharegpt_rows(self.path, rows)

    def _entry(self, row: int, turns: list[tuple[str | None, str | None]] | None):
        """(prompt, prompt tokens, output tokens), or a conversation's turns with --multi-turn; None: skipped."""
        turns = turns or []
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
        if not self.multi_turn:
            return (prompt, prompt_len, out_len)
        conv = [Turn(prompt, out_len)]
        context = prompt_len + out_len
        limit = self.max_turns or len(turns)
        for k in range(2, len(turns) - 1, 2):
            if len(conv) >= limit:
                break
            user, reply = turns[k][1], turns[k + 1][1]
            if user is None or reply is None:
                self.truncated += 1
                break
            u_len = self._count(user)
            o_len = self._count(reply) if self.output_len is None else self.output_len
            if skip_reason(u_len, o_len, skip_min_output_len_check=self.output_len is not None) or \
                    context + u_len + o_len > MAX_TOTAL_LEN:
                self.truncated += 1
                break
            conv.append(Turn(user, o_len))
            context += u_len + o_len
        return tuple(conv)

    def default_num_prompts(self) -> int | None:
        return None

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        self._fill(num_prompts)
        chosen = self._oversample(self._valid, num_prompts)
        if self.multi_turn:
            return ConversationSource([Conversation(c, turns) for c, turns in enumerate(chosen)], self.request_maker(),
                                      self.think, self.seed)
        return LevelSource([Planned(self.request(p, out, i, input_len=plen)) for i, (p, plen, out) in enumerate(chosen)])

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"output_len": self.output_len, "shuffle": not self.disable_shuffle,
                               "temperature": self.temperature, "ignore_eos": self.enforce_length}
        if self.multi_turn:
            out.update(multi_turn=True, max_turns=self.max_turns, **self.think.to_json())
        return out

    def _label_extra(self) -> str:
        return super()._label_extra() + (" multi-turn" if self.multi_turn else "")

    def report(self) -> dict[str, Any]:
        out = super().report()
        if self.multi_turn:
            out["truncated_conversations"] = self.truncated
        return out


class CustomWorkload(FileWorkload):
    kind = "custom"

    def __init__(self, path: str, output_len: int | None = None, **kw: Any):
        super().__init__(path, output_len=output_len, **kw)
        self.has_output_tokens = False

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
        note = self.skip_note()
        if note:
            self.notes.append(note)

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

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        self._fill(num_prompts)
        if not self._valid:
            raise DatasetFileError(f"dataset {self.path.name}: no row has a non-empty 'prompt'")
        chosen = self._oversample(self._valid, num_prompts)
        return LevelSource([Planned(self.request(p, out, i)) for i, (p, out) in enumerate(chosen)])

    def params(self) -> dict[str, Any]:
        return {"output_len": self.output_len, "shuffle": not self.disable_shuffle,
                "temperature": self.temperature, "ignore_eos": self.enforce_length}
