"""Roofline for a model given as a hub id (issue 10): config.json and weight sizes from a local Hugging
Face cache laid out as huggingface_hub lays it out, offline; a plain message when the model is not cached;
bytes per parameter of quantised checkpoints from their config."""

from __future__ import annotations

import json
import struct

import pytest

from data.analysis.roofline import roofline_for, roofline_text, roofline_why_not, stored_run_roofline
from engine.telemetry.roofline import cached_model_folder, estimate_parameters, model_bytes, quantized_bits

LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "model_type": "llama",
}
LLAMA3_8B_BYTES = 16_060_522_496  # the real checkpoint's model.safetensors.index.json metadata.total_size
H100_USED = {"gpus_used": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "key": "H100-SXM-80"}]}


def cache_model(hub, repo_id, config, *, index_total=None, shard_tensors=None, commit="0123abcd"):
    """A model in the cache's own layout: blobs/, snapshots/<commit>/ (links into blobs), refs/main."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    blobs = repo / "blobs"
    blobs.mkdir()

    def put(name, data: bytes):
        blob = blobs / f"blob-{name}"
        blob.write_bytes(data)
        (snap / name).symlink_to(blob)

    put("config.json", json.dumps(config).encode())
    if index_total is not None:
        put("model.safetensors.index.json", json.dumps(
            {"metadata": {"total_size": index_total}, "weight_map": {"lm_head.weight": "model-00004-of-00004.safetensors"}}
        ).encode())
    if shard_tensors is not None:
        header, offset = {}, 0
        for name, (dtype, shape, width) in shard_tensors.items():
            n = width
            for d in shape:
                n *= d
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header).encode()
        put("model.safetensors", struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch):
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # HF_HOME/hub, read when asked (not at import)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def test_the_readme_model_as_a_hub_id_gets_its_roofline_on_an_h100(hub):
    snap = cache_model(hub, "meta-llama/Meta-Llama-3-8B-Instruct", LLAMA3_8B, index_total=LLAMA3_8B_BYTES)
    assert cached_model_folder("meta-llama/Meta-Llama-3-8B-Instruct") == snap
    desc = {"model": "meta-llama/Meta-Llama-3-8B-Instruct", "dtype": "auto", "engine_args": {}}
    roof = roofline_for(H100_USED, desc)
    # The module docstring's figure: 3.35e12 B/s / 16.06e9 B = 209 tok/s.
    assert roof["ceiling_tok_s"] == pytest.approx(3.35e12 / LLAMA3_8B_BYTES)
    assert round(roof["ceiling_tok_s"]) == 209 and roof["weights_from"] == "safetensors index total_size"
    run = {"model": desc["model"], "dtype": "auto", "engine_args": {}, "summary": {},
           "environment": {**H100_USED, "model_path": desc["model"]}}
    roof, why = stored_run_roofline(run)  # what the run-detail screen shows
    assert roofline_text(roof, "H100", why)[0].startswith("batch-1 decode ceiling on H100-SXM-80 = 209 tok/s")


def test_cached_safetensors_give_exact_bytes_and_hf_hub_cache_wins(tmp_path, monkeypatch, hub):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    cache_model(other, "org/tiny", {**LLAMA3_8B, "torch_dtype": "float16"},
                shard_tensors={"a": ("F16", (1000, 500), 2), "b": ("F16", (250,), 2)})
    roof = roofline_for(H100_USED, {"model": "org/tiny", "engine_args": {}})
    assert roof["weights_from"] == "safetensors headers"
    assert roof["bytes_per_token_gb"] * 1e9 == pytest.approx(1000 * 500 * 2 + 250 * 2)


def test_a_model_not_in_the_cache_says_so_and_does_not_blame_the_gpu(hub):
    desc = {"model": "meta-llama/Meta-Llama-3-8B-Instruct", "engine_args": {}}
    assert roofline_for(H100_USED, desc) is None
    why = roofline_why_not(H100_USED, desc)
    assert why.startswith("meta-llama/Meta-Llama-3-8B-Instruct is not in the local Hugging Face cache")
    assert str(hub) in why and "never downloads" in why
    assert "bandwidth" not in why and "H100" not in why
    roof, why = stored_run_roofline({"model": desc["model"], "engine_args": {},
                                     "environment": {**H100_USED, "model_path": desc["model"]}})
    assert roof is None and "not in the local Hugging Face cache" in roofline_text(roof, "H100", why)[0]


def test_no_gpu_and_unknown_gpu_are_told_apart_from_a_missing_model(hub):
    desc = {"model": "org/anything", "engine_args": {}}
    assert roofline_why_not({"gpus_used": [], "device": "CPU"}, desc) == "this run used no GPU (CPU)"
    odd = {"gpus_used": [{"name": "Imaginary GPU 9000", "key": None}]}
    assert roofline_why_not(odd, desc) == "no bandwidth figure for Imaginary GPU 9000 in the GPU specs"


@pytest.mark.parametrize("quant,bits", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, 4),
    ({"quant_method": "gptq", "bits": 8}, 8),
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, 8),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, 4),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}, 4),
])
def test_quantised_weights_take_their_bits_per_parameter_from_the_config(hub, quant, bits):
    config = {**LLAMA3_8B, "quantization_config": quant}
    assert quantized_bits(config)[0] == bits
    params = estimate_parameters(LLAMA3_8B)
    embed = LLAMA3_8B["vocab_size"] * LLAMA3_8B["hidden_size"] * 2  # input and output embeddings, bf16
    mb = model_bytes(config=config)
    assert mb.weight_bytes == int((params - embed) * bits / 8 + embed * 2)
    assert mb.weight_bytes < params * 2  # smaller than the bf16 checkpoint
    # Through the cache too (config only, no weight files cached).
    cache_model(hub, f"org/llama-{quant['quant_method']}", config)
    roof = roofline_for(H100_USED, {"model": f"org/llama-{quant['quant_method']}", "engine_args": {}})
    assert roof["bytes_per_token_gb"] * 1e9 == pytest.approx(mb.weight_bytes)
    assert f"{bits}-bit" in roof["weights_notes"][0]
