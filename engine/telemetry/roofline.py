"""The bandwidth roofline for batch-1 decode: how fast one stream could possibly decode.

At batch 1 every generated token needs every weight read from GPU memory once, and the arithmetic
is tiny, so decode is memory-bound:

    ceiling (tok/s) = memory bandwidth (bytes/s) / bytes read per token

Assumptions (shown with every figure):
  * bytes read per token = all weight bytes (the embedding table counted in full, although decode
    reads one row of it — slightly conservative) + the KV cache read for the context so far
    (0 unless `context_tokens` is given; small next to the weights for short prompts);
  * the datasheet's peak bandwidth is reached (real kernels sustain ~80-90 % of it);
  * activations, kernel launch gaps and sampling cost nothing;
  * tensor parallelism over N GPUs multiplies bandwidth by N (perfect split, no communication).
Llama 3 8B in BF16/FP16 (8.03e9 parameters, 16.06 GB) on an H100 SXM (3.35 TB/s):
3.35e12 / 16.06e9 = 209 tok/s.

A model given as a hub id (meta-llama/Meta-Llama-3-8B-Instruct) is looked up in the local Hugging Face
cache only (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub; huggingface_hub's layout),
never downloaded: weight bytes from the cached safetensors headers, else the shard index's total_size,
else config.json's parameter estimate x bytes per parameter (torch_dtype, or quantization_config's bits).

engine/ does not import data/: the caller passes a spec dict or the TOML path.
"""

from __future__ import annotations

import json
import os
import struct
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DTYPE_BYTES = {
    "float32": 4, "fp32": 4, "f32": 4, "F32": 4,
    "float16": 2, "fp16": 2, "half": 2, "f16": 2, "F16": 2,
    "bfloat16": 2, "bf16": 2, "BF16": 2,
    "float8": 1, "fp8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "int8": 1, "I8": 1, "U8": 1,
    "I16": 2, "I32": 4, "I64": 8, "F64": 8, "BOOL": 1,
}

ASSUMPTIONS = (
    "batch 1, decode memory-bound: every weight byte read once per token",
    "peak datasheet bandwidth (real kernels sustain ~80-90 %)",
    "KV-cache reads for the context added only when context_tokens is given",
    "tensor parallel N: N x bandwidth, weights split evenly, no communication cost",
)


@dataclass(frozen=True)
class GpuSpec:
    key: str
    name: str
    memory_bandwidth_tbs: float
    memory_gb: float
    bf16_tflops: float
    source: str = ""


def load_gpu_specs(path: str | Path) -> dict[str, GpuSpec]:
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {
        key: GpuSpec(
            key=key,
            name=str(v.get("name", key)),
            memory_bandwidth_tbs=float(v["memory_bandwidth_tbs"]),
            memory_gb=float(v["memory_gb"]),
            bf16_tflops=float(v["bf16_tflops"]),
            source=str(v.get("source", "")),
        )
        for key, v in raw.items()
    }


@dataclass(frozen=True)
class ModelBytes:
    weight_bytes: int
    parameters: int | None
    how: str  # "safetensors headers" | "config.json estimate"
    kv_bytes_per_token: int | None = None  # KV cache bytes per token of context (all layers)
    notes: tuple[str, ...] = field(default_factory=tuple)


def safetensors_weight_bytes(folder: str | Path) -> tuple[int, int] | None:
    """(bytes, parameters) from the headers of a folder's *.safetensors files, without loading them."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total_bytes = total_params = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            total_bytes += int(end) - int(start)
            count = 1
            for d in meta["shape"]:
                count *= int(d)
            total_params += count
    return total_bytes, total_params


def estimate_parameters(config: dict[str, Any]) -> int:
    """Parameters of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM...) from config.json."""
    h = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or h // heads)
    inter = int(config["intermediate_size"])
    vocab = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    attn = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    mlp = 3 * h * inter
    norms = 2 * h
    per_layer = attn + mlp + norms
    embed = vocab * h
    return embed * (1 if tied else 2) + layers * per_layer + h


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int) -> int:
    h = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or h // heads)
    return 2 * int(config["num_hidden_layers"]) * kv_heads * head_dim * dtype_bytes


def quantized_bits(config: dict[str, Any] | None) -> tuple[float, str] | None:
    """(bits per weight, method) of a quantised checkpoint's linear layers from config.json, or None."""
    q = (config or {}).get("quantization_config") or (config or {}).get("compression_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method") or q.get("format") or "quantised")
    bits = q.get("bits") or q.get("w_bit") or q.get("weight_bits")
    if bits is None:
        for group in (q.get("config_groups") or {}).values():  # compressed-tensors
            weights = (group or {}).get("weights") or {}
            if weights.get("num_bits"):
                bits = weights["num_bits"]
                break
    if bits is None and (q.get("load_in_4bit") or q.get("_load_in_4bit")):
        bits = 4
    if bits is None and (q.get("load_in_8bit") or q.get("_load_in_8bit")):
        bits = 8
    if bits is None and method.lower().startswith("fp8"):
        bits = 8
    try:
        return (float(bits), method) if bits else None
    except (TypeError, ValueError):
        return None


def _dtype_width(dtype: Any) -> int:
    return DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 2)


def index_total_size(folder: str | Path) -> int | None:
    """metadata.total_size of a sharded checkpoint's model.safetensors.index.json (bytes), or None."""
    for f in sorted(Path(folder).glob("*.safetensors.index.json")):
        try:
            total = json.loads(f.read_text(encoding="utf-8")).get("metadata", {}).get("total_size")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(total, (int, float)) and total > 0:
            return int(total)
    return None


def model_bytes(folder: str | Path | None = None, config: dict[str, Any] | None = None,
                dtype: str | None = None) -> ModelBytes:
    """Weight bytes from a model folder's safetensors headers, else its shard index's total size, else
    estimated from its config (parameters x bytes per parameter, quantisation included)."""
    notes: list[str] = []
    if config is None and folder is not None and (Path(folder) / "config.json").is_file():
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if dtype in (None, "", "auto"):
        dtype = (config or {}).get("torch_dtype") or (config or {}).get("dtype") or "bfloat16"
    width = _dtype_width(dtype)
    kv = None
    if config is not None:
        try:
            kv = kv_bytes_per_token(config, width)
        except (KeyError, TypeError, ValueError):
            kv = None
    if folder is not None:
        try:
            found = safetensors_weight_bytes(folder)
        except (OSError, ValueError, KeyError, struct.error):
            found = None  # a shard whose blob is missing or partial: fall back to the index
        if found is not None:
            return ModelBytes(found[0], found[1], "safetensors headers", kv, tuple(notes))
        total = index_total_size(folder)
        if total is not None:
            return ModelBytes(total, None, "safetensors index total_size", kv, tuple(notes))
    if config is None:
        raise ValueError("no safetensors files and no config.json: cannot tell the model's size")
    params = estimate_parameters(config)
    quant = quantized_bits(config)
    if quant:
        bits, method = quant
        h, vocab = int(config["hidden_size"]), int(config["vocab_size"])
        embed = vocab * h * (1 if config.get("tie_word_embeddings") else 2)  # embeddings stay at dtype width
        weight_bytes = int((params - embed) * bits / 8 + embed * width)
        notes.append(f"{params / 1e9:.2f}e9 parameters: linear layers {bits:g}-bit ({method}), "
                     f"embeddings {width} bytes ({dtype})")
        return ModelBytes(weight_bytes, params, "config.json estimate", kv, tuple(notes))
    notes.append(f"{params / 1e9:.2f}e9 parameters x {width} bytes ({dtype})")
    return ModelBytes(params * width, params, "config.json estimate", kv, tuple(notes))


# -- models given as hub ids: the local Hugging Face cache, offline ------------------------------------


def hf_hub_cache(env: Mapping[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps models, read now (its constants are fixed at import)."""
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                               "huggingface")
    return Path(home).expanduser() / "hub"


def looks_like_hub_id(model: str) -> bool:
    return bool(model) and not model.startswith(("/", ".", "~")) and model.count("/") <= 1 and " " not in model


def cached_model_folder(model_id: str, cache_dir: str | Path | None = None, revision: str | None = None) -> Path | None:
    """The snapshot folder of a hub model in the local cache (the one holding its config.json), or None.
    Never touches the network."""
    cache = Path(cache_dir) if cache_dir is not None else hf_hub_cache()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None  # type: ignore[assignment]  # huggingface_hub missing: the cache is read by hand
    if try_to_load_from_cache is not None:
        try:
            found = try_to_load_from_cache(model_id, "config.json", cache_dir=str(cache), revision=revision)
        except Exception:  # an id huggingface_hub rejects: not in any cache
            return None
        return Path(found).parent if isinstance(found, str) else None
    # The same layout by hand: models--org--name/refs/<revision> names a snapshot.
    repo = cache / ("models--" + model_id.replace("/", "--"))
    try:
        commit = (repo / "refs" / (revision or "main")).read_text().strip()
    except OSError:
        commit = revision or ""
    folder = repo / "snapshots" / commit
    return folder if commit and (folder / "config.json").is_file() else None


def resolve_weights(model: str | Path | None, dtype: str | None = None) -> tuple[ModelBytes | None, str | None]:
    """(weights, None) for a model folder or a cached hub id, else (None, a plain reason)."""
    if not model:
        return None, "no model path recorded for this run"
    text = str(model)
    folder: Path | None = Path(os.path.expanduser(text))
    if not folder.is_dir():  # type: ignore[union-attr]  # just set
        folder = None
        if looks_like_hub_id(text):
            folder = cached_model_folder(text)
            if folder is None:
                return None, (f"{text} is not in the local Hugging Face cache ({hf_hub_cache()}): no weight size "
                              "for a ceiling (tokentop never downloads; set HF_HUB_CACHE or HF_HOME if it is "
                              "cached elsewhere)")
        else:
            return None, f"model folder {text} does not exist here: no weight size for a ceiling"
    try:
        return model_bytes(folder, dtype=dtype), None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"cannot tell the size of {text}'s weights ({exc})"


@dataclass(frozen=True)
class Roofline:
    gpu: str
    bandwidth_bytes_s: float
    bytes_per_token: float
    ceiling_tok_s: float
    assumptions: tuple[str, ...] = ASSUMPTIONS

    def percent_of(self, measured_tok_s: float | None) -> float | None:
        if not measured_tok_s or self.ceiling_tok_s <= 0:
            return None
        return 100.0 * measured_tok_s / self.ceiling_tok_s

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "bandwidth_tb_s": self.bandwidth_bytes_s / 1e12,
                "bytes_per_token_gb": self.bytes_per_token / 1e9, "ceiling_tok_s": self.ceiling_tok_s,
                "assumptions": list(self.assumptions)}


def decode_ceiling(spec: GpuSpec, weights: ModelBytes | int, *, context_tokens: int = 0,
                   tensor_parallel: int = 1) -> Roofline:
    """Batch-1 decode ceiling: bandwidth / bytes read per token."""
    if isinstance(weights, ModelBytes):
        per_token = weights.weight_bytes + (weights.kv_bytes_per_token or 0) * max(0, context_tokens)
    else:
        per_token = int(weights)
    bandwidth = spec.memory_bandwidth_tbs * 1e12 * max(1, tensor_parallel)
    return Roofline(spec.key, bandwidth, float(per_token), bandwidth / per_token if per_token else 0.0)
