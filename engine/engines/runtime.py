"""Process settings that must be in place before vLLM is imported."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
from pathlib import Path

from engine.engines.embedded_model import cache_dir


def log_dir() -> Path:
    path = cache_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def vllm_log_path() -> Path:
    return log_dir() / "vllm.log"


def prepare_vllm_env() -> None:
    """Keep vLLM's files in tokentop's cache dir (not /tmp), its logs in a file (not on our
    screen), and it offline: the model is local, nothing is fetched from a hub."""
    root = cache_dir()
    tmp_root = root / "tmp"
    _remove_stale_tmp(tmp_root)
    # One folder per process, removed at exit: vLLM's IPC sockets and compile files land here.
    tmp = tmp_root / f"p{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    atexit.register(shutil.rmtree, tmp, True)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(root / "vllm"))
    os.environ["TMPDIR"] = str(tmp)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_DO_NOT_TRACK", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "VLLM_LOGGING_CONFIG_PATH" not in os.environ:
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(vllm_log_path()),
                    "formatter": "plain",
                    "level": "INFO",
                }
            },
            "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
        }
        path = log_dir() / "vllm-logging.json"
        path.write_text(json.dumps(config))
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)


def _remove_stale_tmp(tmp_root: Path) -> None:
    if not tmp_root.is_dir():
        return
    for child in tmp_root.iterdir():
        name = child.name
        if name.startswith("p") and name[1:].isdigit():
            try:
                os.kill(int(name[1:]), 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(child, ignore_errors=True)


class QuietNativeOutput:
    """Send fds 1 and 2 (and so every child process's output: vLLM's engine core, tqdm bars,
    native warnings) to a log file, keeping the terminal reachable as `self.stdout`/`self.stderr`.

    The CLI prints its progress and results through these; the Textual app draws through them.
    """

    def __init__(self, log_name: str = "engine-output.log"):
        self.log_path = log_dir() / log_name
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        self._saved: list[int] = []
        self._active = False

    def __enter__(self) -> "QuietNativeOutput":
        sys.stdout.flush()
        sys.stderr.flush()
        saved_out, saved_err = os.dup(1), os.dup(2)
        self._saved = [saved_out, saved_err]
        self.stdout = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8", errors="replace")
        self.stderr = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8", errors="replace")
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        self._orig = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        # Textual's driver writes to __stderr__ (typeshed marks sys.__stdout__/__stderr__ Final)
        sys.__stdout__, sys.__stderr__ = self.stdout, self.stderr  # type: ignore[misc]
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        self._active = False
        for f in (self.stdout, self.stderr):
            try:
                f.flush()
                f.close()
            except Exception:
                pass
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = self._orig  # type: ignore[misc]  # see start
