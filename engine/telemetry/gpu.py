"""GPU telemetry from NVML (nvidia-ml-py's `pynvml`), sampled on its own thread a few times a second.

Per GPU: utilisation (SM and memory), memory used/total, power draw and limit, temperature, SM and
memory clocks. Energy is integrated from the power samples (trapezoids); where the GPU has NVML's
total-energy counter (Volta and later) its difference over the run is kept as a cross-check.
No GPU or no NVML: `note` says why (once), `available` is False, and nothing else happens.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from engine.terminal_text import one_line

DEFAULT_INTERVAL_S = 0.25  # 4 Hz


@dataclass(frozen=True)
class GpuSample:
    t_s: float  # time.perf_counter() when read
    gpu_index: int
    util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    energy_counter_j: float | None = None  # NVML total energy since driver load, where supported

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuSampler:
    """Samples every GPU NVML sees. `nvml` is the pynvml module (injectable for tests)."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        nvml: Any = None,
        on_sample: Callable[[list[GpuSample]], None] | None = None,
        keep: int = 100_000,
    ):
        self.interval_s = interval_s
        self._nvml = nvml
        self.on_sample = on_sample
        self.keep = keep
        self.samples: list[GpuSample] = []
        self.gpus: list[dict[str, Any]] = []
        self.note: str | None = None
        self.available = False
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initialised = False

    # -- lifecycle ----------------------------------------------------------------
    def open(self) -> bool:
        """Initialise NVML once. False (with `note`) when there is no GPU or no NVML."""
        if self._initialised:
            return self.available
        self._initialised = True
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml  # type: ignore[no-redef]  # nvidia-ml-py, unless a double was injected
            except ImportError:
                self.note = "no GPU telemetry: nvidia-ml-py (pynvml) is not installed"
                return False
            self._nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
            self.note = f"no GPU (NVML unavailable: {one_line(exc, 200)})"
            return False
        try:
            count = int(nvml.nvmlDeviceGetCount())
            for i in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                self._handles.append(handle)
                mem = self._try(nvml.nvmlDeviceGetMemoryInfo, handle)
                self.gpus.append({
                    "index": i,
                    "name": _text(self._try(nvml.nvmlDeviceGetName, handle) or "GPU"),
                    "memory_mb": int(mem.total // (1024 * 1024)) if mem is not None else None,
                })
        except Exception as exc:
            self.note = f"no GPU telemetry (NVML error: {one_line(exc, 200)})"
            self._shutdown_nvml()
            return False
        if not self._handles:
            self.note = "no GPU (NVML found no devices)"
            self._shutdown_nvml()
            return False
        self.available = True
        return True

    def start(self) -> "GpuSampler":
        if not self.open():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tokentop-nvml", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self.available:
            self._shutdown_nvml()
            self.available = False
            self._initialised = False
            self._handles = []

    def __enter__(self) -> "GpuSampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _shutdown_nvml(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    # -- sampling -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            self.sample_once()
            self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - t)))

    def sample_once(self) -> list[GpuSample]:
        nvml = self._nvml
        now = time.perf_counter()
        batch = []
        for i, h in enumerate(self._handles):
            util = self._try(nvml.nvmlDeviceGetUtilizationRates, h)
            mem = self._try(nvml.nvmlDeviceGetMemoryInfo, h)
            power = self._try(nvml.nvmlDeviceGetPowerUsage, h)  # mW
            limit = self._try(nvml.nvmlDeviceGetEnforcedPowerLimit, h)  # mW
            temp = self._try(nvml.nvmlDeviceGetTemperature, h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
            sm = self._try(nvml.nvmlDeviceGetClockInfo, h, getattr(nvml, "NVML_CLOCK_SM", 1))
            memclk = self._try(nvml.nvmlDeviceGetClockInfo, h, getattr(nvml, "NVML_CLOCK_MEM", 2))
            energy = self._try(getattr(nvml, "nvmlDeviceGetTotalEnergyConsumption", None), h)  # mJ
            batch.append(GpuSample(
                t_s=now,
                gpu_index=i,
                util_pct=_num(getattr(util, "gpu", None)),
                mem_util_pct=_num(getattr(util, "memory", None)),
                mem_used_mb=mem.used / (1024 * 1024) if mem is not None else None,
                mem_total_mb=mem.total / (1024 * 1024) if mem is not None else None,
                power_w=power / 1000.0 if power is not None else None,
                power_limit_w=limit / 1000.0 if limit is not None else None,
                temp_c=_num(temp),
                sm_clock_mhz=_num(sm),
                mem_clock_mhz=_num(memclk),
                energy_counter_j=energy / 1000.0 if energy is not None else None,
            ))
        with self._lock:
            self.samples.extend(batch)
            if len(self.samples) > self.keep:
                del self.samples[: len(self.samples) - self.keep]
        if self.on_sample is not None:
            try:
                self.on_sample(batch)
            except Exception:
                pass
        return batch

    @staticmethod
    def _try(fn: Callable | None, *args: Any) -> Any:
        """One field NVML does not support on this GPU (NVMLError_NotSupported) is None, not a crash."""
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception:
            return None

    # -- reading --------------------------------------------------------------------
    def snapshot(self, since: float | None = None, until: float | None = None) -> list[GpuSample]:
        with self._lock:
            return [s for s in self.samples
                    if (since is None or s.t_s >= since) and (until is None or s.t_s <= until)]

    def latest(self) -> list[GpuSample]:
        with self._lock:
            if not self.samples:
                return []
            t = self.samples[-1].t_s
            return [s for s in self.samples if s.t_s == t]


def integrate_energy_j(samples: Sequence[GpuSample]) -> float | None:
    """Energy over the samples (all GPUs summed): trapezoids over each GPU's power series."""
    by_gpu: dict[int, list[GpuSample]] = {}
    for s in samples:
        if s.power_w is not None:
            by_gpu.setdefault(s.gpu_index, []).append(s)
    if not by_gpu:
        return None
    total = 0.0
    for series in by_gpu.values():
        series.sort(key=lambda s: s.t_s)
        for a, b in zip(series, series[1:]):
            total += (a.power_w + b.power_w) / 2.0 * (b.t_s - a.t_s)  # type: ignore[operator]
    return total


def energy_counter_j(samples: Sequence[GpuSample]) -> float | None:
    """Energy from NVML's total-energy counter (last - first per GPU), where every GPU has it."""
    by_gpu: dict[int, list[float]] = {}
    for s in sorted(samples, key=lambda s: s.t_s):
        if s.energy_counter_j is not None:
            by_gpu.setdefault(s.gpu_index, []).append(s.energy_counter_j)
    if not by_gpu or any(len(v) < 2 for v in by_gpu.values()):
        return None
    return sum(v[-1] - v[0] for v in by_gpu.values())


def summarise_gpu(samples: Sequence[GpuSample], output_tokens: int) -> dict[str, Any]:
    """Run-level GPU figures: energy, J per output token, mean/peak power, util, memory, temperature."""
    if not samples:
        return {}
    energy = integrate_energy_j(samples)
    out: dict[str, Any] = {
        "samples": len(samples),
        "gpus": len({s.gpu_index for s in samples}),
        "energy_j": energy,
        "energy_counter_j": energy_counter_j(samples),
        "j_per_output_token": energy / output_tokens if energy is not None and output_tokens else None,
    }
    for name in ("util_pct", "power_w", "temp_c", "mem_used_mb", "sm_clock_mhz"):
        values = [getattr(s, name) for s in samples if getattr(s, name) is not None]
        out[f"mean_{name}"] = sum(values) / len(values) if values else None
        out[f"max_{name}"] = max(values) if values else None
    return out


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
