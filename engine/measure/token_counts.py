"""How many output tokens each streamed event carried, and how that was known.

A server that sends `usage` on every event (vLLM's `continuous_usage_stats`) gives exact per-event
counts; the in-process engine has the token ids. Otherwise tokentop counts for itself, in this order:

  source            per event                                   total
  "usage"           the server's cumulative usage, per event    exact
  "engine"          the engine's token ids                      exact
  "usage+tokenizer" the model's tokenizer on the event's text,  the server's final usage (exact)
                    scaled to the final usage
  "usage+spread"    the final usage spread evenly over the      the server's final usage (exact)
                    events that carried text (no tokenizer)
  "tokenizer"       the model's tokenizer on the event's text   estimate (the server sent no usage)
  "events"          1 per event that carried text               estimate: the number of events
                                                                (no usage and no tokenizer)

Tokenising never happens on the engine's event loop (it would delay the next chunk's timestamp):
the engine keeps each event's text (RequestRecord.chunk_texts) and applies the cheap arithmetic
sources at once; `Engine.settle(record)` applies the tokenizer afterwards on the caller's thread
(the run's driver thread, or whoever waits for the request). A live meter may count an event's text
on the UI thread while the request streams; the final counts replace it when the request ends.

The tokenizer is the model's own, read with transformers' AutoTokenizer from a local folder or the
local Hugging Face cache only (local_files_only: nothing is downloaded). `--tokenizer NAME_OR_PATH`
(vLLM's and AIPerf's option name) names it; otherwise the served model id is tried as one.
"""

from __future__ import annotations

import bisect
import os
import threading
from pathlib import Path
from typing import Sequence

from engine.terminal_text import one_line
from engine.types import BadRequestError, RequestRecord

SOURCES = {
    "usage": "per-event usage from the server (exact)",
    "engine": "the engine's token ids (exact)",
    "usage+tokenizer": "the server's final usage (exact), split over events by the tokenizer",
    "usage+spread": "the server's final usage (exact), spread over the events (no tokenizer)",
    "tokenizer": "the tokenizer on the text (estimate: the server sent no usage)",
    "events": "the number of events (estimate: no usage and no tokenizer; pass --tokenizer)",
}
ESTIMATED = frozenset({"tokenizer", "events"})
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def is_estimated(source: str | None) -> bool:
    """True when the output token count is tokentop's estimate, not the server's or engine's."""
    return source in ESTIMATED


def describe_source(source: str | None) -> str:
    return SOURCES.get(source or "", source or "unknown")


# -- finding and loading a tokenizer (offline) ---------------------------------------------------
def find_tokenizer(name_or_path: str | None) -> tuple[Path | None, str]:
    """(folder, "") for a local tokenizer folder or a model id in the local Hugging Face cache,
    else (None, a plain reason). Never touches the network."""
    if not name_or_path:
        return None, "no tokenizer named"
    text = str(name_or_path)
    folder = Path(os.path.expanduser(text))
    if folder.is_dir():
        if any((folder / f).is_file() for f in _TOKENIZER_FILES):
            return folder, ""
        return None, f"{text} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:2])}, ...)"
    from engine.telemetry.roofline import cached_model_folder, hf_hub_cache, looks_like_hub_id

    if looks_like_hub_id(text):
        found = cached_model_folder(text)
        if found is None:
            found = _cached_tokenizer_folder(text)
        if found is not None and any((found / f).is_file() for f in _TOKENIZER_FILES):
            return found, ""
        return None, (f"{text} is neither a folder nor in the local Hugging Face cache ({hf_hub_cache()}); "
                      "tokentop never downloads")
    return None, f"{text} is not a folder"


def _cached_tokenizer_folder(model_id: str) -> Path | None:
    """A cached repo that holds only a tokenizer (no config.json)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        from engine.telemetry.roofline import hf_hub_cache

        found = try_to_load_from_cache(model_id, "tokenizer_config.json", cache_dir=str(hf_hub_cache()))
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


class TokenCounter:
    """A model's tokenizer, loaded offline. `count(text)` = tokens of a text (no special tokens);
    `split(texts)` = tokens per event when the events' texts are joined (a token belongs to the event
    its last character arrived in), so a token split across two events is counted once."""

    def __init__(self, folder: Path, name: str | None = None):
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.name = name or str(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.fast = bool(getattr(self.tokenizer, "is_fast", False))

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def split(self, texts: Sequence[str]) -> list[int]:
        if not self.fast:
            return [self.count(t) for t in texts]
        ends: list[int] = []  # the character index where each event's text ends
        pos = 0
        for t in texts:
            pos += len(t)
            ends.append(pos)
        per = [0] * len(texts)
        if not pos:
            return per
        enc = self.tokenizer("".join(texts), add_special_tokens=False, return_offsets_mapping=True)
        for start, end in enc["offset_mapping"]:
            last = max(start, end - 1)
            per[min(len(per) - 1, bisect.bisect_right(ends, last))] += 1
        return per


def load_counter(name_or_path: str | None, *, required: bool = False) -> tuple[TokenCounter | None, str]:
    """(counter, "") or (None, why not). With `required` (the user named it with --tokenizer), a
    tokenizer that cannot be found or read raises BadRequestError with one line saying what to do."""
    folder, why = find_tokenizer(name_or_path)
    if folder is None:
        if required:
            raise BadRequestError(
                f"--tokenizer {name_or_path}: {why}: pass a local tokenizer folder or a cached model id")
        return None, why
    try:
        return TokenCounter(folder, str(name_or_path)), ""
    except Exception as exc:  # a damaged folder, a tokenizer class transformers lacks
        first = one_line(str(exc), 120)
        why = f"cannot read the tokenizer in {folder} ({type(exc).__name__}: {first})"
        if required:
            raise BadRequestError(f"--tokenizer {name_or_path}: {why}") from None
        return None, why


class LazyCounter:
    """A tokenizer loaded on first use (thread-safe), from `--tokenizer` or else the served model id."""

    def __init__(self, candidates: Sequence[str | None]):
        self.candidates = [c for c in candidates if c]
        self._lock = threading.Lock()
        self._loaded = False
        self.counter: TokenCounter | None = None
        self.why = "not looked for yet"

    @property
    def ready(self) -> TokenCounter | None:
        """The counter if it is already loaded (never loads: for the UI thread)."""
        return self.counter if self._loaded else None

    def get(self) -> TokenCounter | None:
        with self._lock:
            if not self._loaded:
                reasons = []
                for name in self.candidates:
                    counter, why = load_counter(name)
                    if counter is not None:
                        self.counter = counter
                        break
                    reasons.append(why)
                self.why = "; ".join(reasons) or "no tokenizer named (pass --tokenizer)"
                self._loaded = True
            return self.counter


# -- settling a request's counts ------------------------------------------------------------------
def settle_counts(record: RequestRecord, counter: TokenCounter | None) -> None:
    """Per-event token counts for a record whose events lacked per-event usage (record.chunk_texts
    holds their texts). With a tokenizer: "usage+tokenizer" (scaled to the final usage) or
    "tokenizer"; without: "usage+spread" or "events". Sets record.chunk_tokens and
    record.token_count_source; keeps chunk_texts (the caller drops them when done)."""
    texts = record.chunk_texts
    if texts is None:
        return
    total = record.reported_output_tokens
    if counter is not None:
        per = counter.split(texts)
        if total is not None:
            per = rescale(per, total, texts)
            source = "usage+tokenizer"
        else:
            source = "tokenizer"
    elif total is not None:
        per = spread(total, texts)
        source = "usage+spread"
    else:
        per = [1 if t else 0 for t in texts]
        source = "events"
    record.chunk_tokens = per
    record.token_count_source = source


def spread(total: int, texts: Sequence[str]) -> list[int]:
    """`total` tokens over the events that carried text, as evenly as whole tokens allow (the earlier
    events take the remainder); over every event when none carried text."""
    idx = [i for i, t in enumerate(texts) if t] or list(range(len(texts)))
    per = [0] * len(texts)
    if not idx or total <= 0:
        return per
    q, r = divmod(int(total), len(idx))
    for k, i in enumerate(idx):
        per[i] = q + (1 if k < r else 0)
    return per


def rescale(per: Sequence[int], total: int, texts: Sequence[str]) -> list[int]:
    """Counts scaled so they sum to `total` (largest remainders; ties to the earlier event)."""
    have = sum(per)
    if have == total:
        return list(per)
    if have <= 0:
        return spread(total, texts)
    quotas = [p * total / have for p in per]
    out = [int(q) for q in quotas]
    left = int(total) - sum(out)
    order = sorted(range(len(per)), key=lambda i: (-(quotas[i] - out[i]), i))
    for i in order[:left]:
        out[i] += 1
    return out
