"""Tokens for workloads: the model's tokenizer behind one small interface, and vLLM's own rules for
turning random token ids into prompts of an exact length.

`Tokens` wraps whatever tokenizer the engine has (the in-process engine's, or a Hugging Face
tokenizer loaded from a local folder for an OpenAI-compatible server). The rules below are copied
from vLLM 0.32 (`vllm/benchmarks/datasets/datasets.py` and `utils.py`) so that tokentop and
`vllm bench serve` draw the same prompts from the same seed:

  * `gen_prompt_decode_to_target_len`: decode, re-encode, then truncate or extend with random ids,
    up to 10 times, until the text re-tokenises to the target length (vLLM #10847 is the trap it
    closes: N random ids do not always decode to text of N tokens);
  * `is_valid_sequence`: ShareGPT's filter (prompt and output >= 4 tokens, prompt <= 1024,
    prompt + output <= 2048);
  * `allowed_token_ids`: the vocabulary without special tokens.

`block_tokens` is tokentop's own: the tokens of one hash block of a trace, derived from the hash id
with a stable function (BLAKE2b), so two processes that replay one trace send the same tokens (vLLM
seeds them with Python's `hash()` of a string, which changes from process to process).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np


class Tokens:
    """The model's tokenizer, as workloads use it. Wraps a Hugging Face tokenizer (or vLLM's wrapper of
    one): `encode`/`decode` token ids (ints), `vocab_size`, the special ids, and the chat template."""

    def __init__(self, tokenizer: Any, source: str = ""):
        self.tok = tokenizer
        self.source = source  # where it came from (a folder, "the engine's"), for messages and identity
        self.vocab_size = int(tokenizer.vocab_size)
        self.special_ids = frozenset(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
        try:
            self.num_special = int(tokenizer.num_special_tokens_to_add())
        except Exception:  # a tokenizer without it adds none
            self.num_special = 0
        self._allowed: np.ndarray | None = None

    def encode(self, text: str, special: bool = False) -> list[int]:
        """Token ids of `text`; `special`: with the special tokens the tokenizer adds (BOS...), as a
        server tokenises a completions prompt."""
        return [int(i) for i in self.tok.encode(text, add_special_tokens=special)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))

    def count(self, text: str) -> int:
        """vLLM's ShareGPT count: `len(tokenizer(text).input_ids)` (special tokens included)."""
        return len(self.tok(text).input_ids)

    def allowed(self) -> np.ndarray:
        """Token ids that are not special, ascending (vLLM's `set(range(V)) - set(special)`)."""
        if self._allowed is None:
            self._allowed = allowed_token_ids(self.vocab_size, self.special_ids)
        return self._allowed

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tok, "chat_template", None))

    def chat_text(self, messages: Sequence[tuple[str, str]]) -> str:
        """The conversation in the model's chat template, ready for the assistant's next turn."""
        return self.tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                            add_generation_prompt=True, tokenize=False)

    def chat_ids(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        out = self.tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                           add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return [int(i) for i in out]


def allowed_token_ids(vocab_size: int, special_ids: Sequence[int] | frozenset[int]) -> np.ndarray:
    special = set(int(i) for i in special_ids)
    return np.array([i for i in range(int(vocab_size)) if i not in special], dtype=np.int64)


def gen_prompt_decode_to_target_len(tokens: Tokens, token_sequence: list[int], target_token_len: int,
                                    max_retry: int = 10, add_special_tokens: bool = False,
                                    rng: np.random.Generator | None = None,
                                    legacy: np.random.RandomState | None = None) -> tuple[str, list[int], int]:
    """vLLM's rule, line for line: decode then re-encode, truncating or extending with random ids
    (from `rng`, else the legacy RandomState `legacy`, as vLLM's global np.random) until the text
    re-tokenises to `target_token_len`. Returns (text, ids, mismatch: final length - target when the
    10 tries ran out, else 0)."""
    remain = max_retry
    mismatch = 0
    while True:
        prompt = tokens.decode(token_sequence)
        token_sequence = tokens.encode(prompt, special=add_special_tokens)
        if remain <= 0:
            if len(token_sequence) != target_token_len:
                mismatch = len(token_sequence) - target_token_len
            break
        if len(token_sequence) == target_token_len:
            break
        if len(token_sequence) < target_token_len:
            size = target_token_len - len(token_sequence)
            if rng is not None:
                extra = rng.integers(0, tokens.vocab_size, size=size).tolist()
            else:
                extra = (legacy or np.random.mtrand._rand).randint(0, tokens.vocab_size, size=size).tolist()
            token_sequence.extend(int(x) for x in extra)
        else:
            token_sequence = token_sequence[:target_token_len]
        remain -= 1
    return prompt, token_sequence, mismatch


def is_valid_sequence(prompt_len: int, output_len: int, min_len: int = 4, max_prompt_len: int = 1024,
                      max_total_len: int = 2048, skip_min_output_len_check: bool = False) -> bool:
    """vLLM's ShareGPT filter (vllm.benchmarks.datasets.is_valid_sequence)."""
    return skip_reason(prompt_len, output_len, min_len, max_prompt_len, max_total_len,
                       skip_min_output_len_check) is None


def skip_reason(prompt_len: int, output_len: int, min_len: int = 4, max_prompt_len: int = 1024,
                max_total_len: int = 2048, skip_min_output_len_check: bool = False) -> str | None:
    """Why `is_valid_sequence` would reject a pair (the first rule it breaks, in vLLM's order), or None."""
    if prompt_len < min_len:
        return f"prompt < {min_len} tokens"
    if not skip_min_output_len_check and output_len < min_len:
        return f"output < {min_len} tokens"
    if prompt_len > max_prompt_len:
        return f"prompt > {max_prompt_len} tokens"
    if prompt_len + output_len > max_total_len:
        return f"prompt + output > {max_total_len} tokens"
    return None


def stable_int(*parts: Any) -> int:
    """A 64-bit integer from the parts' text, the same in every process and on every machine."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def block_tokens(hash_id: int, block_size: int, allowed: np.ndarray, size: int | None = None,
                 salt: str = "tokentop-block") -> list[int]:
    """The tokens of trace block `hash_id` (`block_size` of them): drawn from the allowed ids by a
    generator seeded with a stable hash of the id. `size` < block_size gives a (last, partial) block:
    the first `size` tokens of the full block, so a request that ends inside a block still shares that
    block's beginning with every other request that lists it."""
    rng = np.random.default_rng(stable_int(salt, int(hash_id), int(block_size)))
    full = allowed[rng.integers(0, len(allowed), size=int(block_size))]
    return [int(x) for x in full[: block_size if size is None else size]]
