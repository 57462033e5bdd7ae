"""A test double of the `pynvml` module (nvidia-ml-py) with NVML's real API shape.

Same function names, argument order, units (power in mW, energy in mJ, memory in bytes) and
return types (structs with .gpu/.memory, .total/.free/.used) as nvidia-ml-py; errors are
NVMLError subclasses. Values follow a scripted trajectory so tests can check the integration.
"""

from __future__ import annotations

from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value

    def __str__(self):
        return {1: "Uninitialized", 3: "Not Supported", 9: "Driver Not Loaded",
                12: "NVML Shared Library Not Found"}.get(self.value, f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):
    def __init__(self):
        super().__init__(3)


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self):
        super().__init__(12)


class FakeNvml:
    """Build a module-like object: FakeNvml(gpus=[...]).module() or FakeNvml(missing=True)."""

    def __init__(self, gpus=None, missing=False, power_w=300.0, unsupported=()):
        self.gpus = gpus if gpus is not None else [{"name": "NVIDIA H100 80GB HBM3", "mem_total": 80 * 1024**3}]
        self.missing = missing
        self.power_w = power_w
        self.unsupported = set(unsupported)
        self.initialised = 0
        self.calls = 0
        self.energy_mj = [0.0 for _ in self.gpus]

    def module(self):
        m = SimpleNamespace()
        for name in ("NVML_TEMPERATURE_GPU", "NVML_CLOCK_SM", "NVML_CLOCK_MEM", "NVML_CLOCK_GRAPHICS"):
            setattr(m, name, globals()[name])
        m.NVMLError = NVMLError
        m.NVMLError_NotSupported = NVMLError_NotSupported
        m.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
        fake = self

        def init():
            if fake.missing:
                raise NVMLError_LibraryNotFound()
            fake.initialised += 1

        def shutdown():
            fake.initialised -= 1

        def need_init():
            if fake.initialised <= 0:
                raise NVMLError(1)

        def handle(i):
            need_init()
            if not 0 <= i < len(fake.gpus):
                raise NVMLError(2)
            return ("handle", i)

        def guard(name, h):
            need_init()
            fake.calls += 1
            if name in fake.unsupported:
                raise NVMLError_NotSupported()
            return h[1]

        m.nvmlInit = init
        m.nvmlShutdown = shutdown
        m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
        m.nvmlDeviceGetCount = lambda: (need_init(), len(fake.gpus))[1]
        m.nvmlDeviceGetHandleByIndex = handle
        m.nvmlDeviceGetName = lambda h: fake.gpus[guard("name", h)]["name"]
        # UUIDs as NVML prints them ("GPU-" + 36 characters); a GPU may give its own.
        m.nvmlDeviceGetUUID = lambda h: (lambda i: fake.gpus[i].get("uuid") or f"GPU-{i:08x}-0000-4000-8000-{i:012x}")(
            guard("uuid", h))

        def meminfo(h):
            i = guard("memory", h)
            total = fake.gpus[i]["mem_total"]
            used = total // 2
            return SimpleNamespace(total=total, free=total - used, used=used)

        m.nvmlDeviceGetMemoryInfo = meminfo
        m.nvmlDeviceGetUtilizationRates = lambda h: (guard("util", h), SimpleNamespace(gpu=87, memory=55))[1]
        m.nvmlDeviceGetPowerUsage = lambda h: (guard("power", h), int(fake.power_w * 1000))[1]  # mW
        m.nvmlDeviceGetEnforcedPowerLimit = lambda h: (guard("power_limit", h), 700_000)[1]  # mW
        m.nvmlDeviceGetTemperature = lambda h, sensor: (guard("temp", h), 64)[1]
        m.nvmlDeviceGetClockInfo = lambda h, clock: (guard("clock", h), 1980 if clock == NVML_CLOCK_SM else 2619)[1]

        def energy(h):
            i = guard("energy", h)
            fake.energy_mj[i] += 1000.0
            return int(fake.energy_mj[i])  # mJ, monotonically increasing

        m.nvmlDeviceGetTotalEnergyConsumption = energy
        return m
