"""One canonical key per GPU, whatever a provider or NVML calls it.

The key keeps the form factor because it changes throughput: ``H100-SXM-80`` and ``H100-PCIE-80``
are different machines. ``canonical_gpu("NVIDIA H100 80GB HBM3")`` gives ``H100-SXM-80``; a source
that drops the form factor ("H100", Vultr's ``NVIDIA_A100``) still matches, marked ``approximate``.
A name we do not know gives ``key=None``: callers keep it and show it as unmatched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuMatch:
    key: str | None  # canonical key, None when the name is not recognised
    approximate: bool  # True when the source left out the form factor or memory and we assumed it
    raw: str  # the name exactly as the source gave it

    @property
    def matched(self) -> bool:
        return self.key is not None


@dataclass(frozen=True)
class GpuSpec:
    key: str
    label: str
    memory_gb: int


# Every canonical key, with a display label and per-GPU memory.
GPUS: dict[str, GpuSpec] = {
    spec.key: spec
    for spec in [
        GpuSpec("B200-180", "B200 180GB", 180),
        GpuSpec("GH200-96", "GH200 96GB", 96),
        GpuSpec("H200-SXM-141", "H200 SXM 141GB", 141),
        GpuSpec("H200-NVL-141", "H200 NVL 141GB", 141),
        GpuSpec("H100-SXM-80", "H100 SXM 80GB", 80),
        GpuSpec("H100-PCIE-80", "H100 PCIe 80GB", 80),
        GpuSpec("H100-NVL-94", "H100 NVL 94GB", 94),
        GpuSpec("A100-SXM-80", "A100 SXM 80GB", 80),
        GpuSpec("A100-SXM-40", "A100 SXM 40GB", 40),
        GpuSpec("A100-PCIE-80", "A100 PCIe 80GB", 80),
        GpuSpec("A100-PCIE-40", "A100 PCIe 40GB", 40),
        GpuSpec("L40S-48", "L40S 48GB", 48),
        GpuSpec("L40-48", "L40 48GB", 48),
        GpuSpec("L4-24", "L4 24GB", 24),
        GpuSpec("A40-48", "A40 48GB", 48),
        GpuSpec("A16-16", "A16 16GB", 16),
        GpuSpec("A10-24", "A10 24GB", 24),
        GpuSpec("A10G-24", "A10G 24GB", 24),
        GpuSpec("A6000-48", "RTX A6000 48GB", 48),
        GpuSpec("RTX6000ADA-48", "RTX 6000 Ada 48GB", 48),
        GpuSpec("RTXPRO6000-96", "RTX PRO 6000 96GB", 96),
        GpuSpec("RTX6000-24", "Quadro RTX 6000 24GB", 24),
        GpuSpec("RTX5090-32", "RTX 5090 32GB", 32),
        GpuSpec("RTX4090-24", "RTX 4090 24GB", 24),
        GpuSpec("RTX3090-24", "RTX 3090 24GB", 24),
        GpuSpec("V100-32", "V100 32GB", 32),
        GpuSpec("V100-16", "V100 16GB", 16),
        GpuSpec("T4-16", "T4 16GB", 16),
        GpuSpec("MI300X-192", "MI300X 192GB", 192),
    ]
}


def gpu_label(key: str | None) -> str:
    if key is None:
        return "unmatched"
    spec = GPUS.get(key)
    return spec.label if spec else key


# Families: (regex on the normalised name, {form: key-by-memory}, default form when the name has none,
# whether a missing form is exact (NVIDIA names the card without a suffix) rather than assumed).
# Order matters: longer / more specific names first.
_FAMILIES: list[tuple[str, re.Pattern[str], dict[str | None, dict[int, str]], str | None, bool]] = []


def _family(name, pattern, forms, default=None, bare_is_exact=False):
    _FAMILIES.append((name, re.compile(pattern), forms, default, bare_is_exact))


_family("GH200", r"\bGH ?200\b", {None: {96: "GH200-96"}})
_family("B200", r"\bB200\b", {None: {180: "B200-180"}})
# NVIDIA's own name for the SXM H200 is plain "H200"; the PCIe card is "H200 NVL".
_family("H200", r"\bH200\b", {"SXM": {141: "H200-SXM-141"}, "NVL": {141: "H200-NVL-141"}}, "SXM", True)
_family(
    "H100",
    r"\bH100\b",
    {"SXM": {80: "H100-SXM-80"}, "PCIE": {80: "H100-PCIE-80"}, "NVL": {94: "H100-NVL-94"}},
    "SXM",
)
_family(
    "A100",
    r"\bA100X?\b",
    {"SXM": {40: "A100-SXM-40", 80: "A100-SXM-80"}, "PCIE": {40: "A100-PCIE-40", 80: "A100-PCIE-80"}},
    "SXM",
)
_family("L40S", r"\bL40 ?S\b", {None: {48: "L40S-48"}})
_family("L40", r"\bL40\b", {None: {48: "L40-48"}})
_family("L4", r"\bL4\b", {None: {24: "L4-24"}})
_family("A10G", r"\bA10G\b", {None: {24: "A10G-24"}})
_family("A10", r"\bA10\b", {None: {24: "A10-24"}})
_family("A40", r"\bA40\b", {None: {48: "A40-48"}})
_family("A16", r"\bA16\b", {None: {16: "A16-16"}})
_family("RTXPRO6000", r"\bRTX PRO 6000\b|\bRTXPRO ?6000\b|\bPRO 6000\b", {None: {96: "RTXPRO6000-96"}})
_family("RTX6000ADA", r"\b6000 ?ADA\b|\bRTX 6000 ADA\b", {None: {48: "RTX6000ADA-48"}})
_family("A6000", r"\bA6000\b", {None: {48: "A6000-48"}})
_family("RTX6000", r"\bRTX 6000\b", {None: {24: "RTX6000-24"}})
_family("RTX5090", r"\bRTX 5090\b|^5090\b", {None: {32: "RTX5090-32"}})
_family("RTX4090", r"\bRTX 4090\b|^4090\b", {None: {24: "RTX4090-24"}})
_family("RTX3090", r"\bRTX 3090\b|^3090\b", {None: {24: "RTX3090-24"}})
_family("V100", r"\bV100\b", {None: {16: "V100-16", 32: "V100-32"}})
_family("T4", r"\bT4\b", {None: {16: "T4-16"}})
_family("MI300X", r"\bMI300X\b", {None: {192: "MI300X-192"}})

# Variants we must not swallow into a base family ("RTX 4090 D", "RTX 4090 Ti", "L40G").
_EXCLUDE = re.compile(r"\b(4090|5090|3090) ?(D|TI|M|LAPTOP|MOBILE)\b|\bMAX-Q\b")


def _normalise(name: str) -> str:
    s = name.upper()
    s = re.sub(r"[_\-/,()]+", " ", s)
    s = re.sub(r"\bGPU \d+X\b", " ", s)  # Lambda: gpu_8x_h100_sxm5
    s = re.sub(r"^\s*\d+X\s+", " ", s)  # "1x A100 (40 GB PCIe)"
    s = re.sub(r"\b(NVIDIA|GEFORCE|TESLA|QUADRO|AMD|INSTINCT)\b", " ", s)
    s = re.sub(r"\bRTX(?=\d|A\d|PRO)", "RTX ", s)  # RTX4090 -> RTX 4090, RTXA6000 -> RTX A6000
    s = re.sub(r"\bRTX A(\d{4})\b", r"A\1", s)  # RTX A6000 -> A6000
    s = re.sub(r"\bRTX PRO ?(\d{4})", r"RTX PRO \1", s)
    s = re.sub(r"(\d)(GB)\b", r"\1 GB", s)
    s = re.sub(r"\s+", " ", s).strip()
    return s


def _form(s: str, family: str) -> str | None:
    if re.search(r"\bNVL\b", s):
        return "NVL"
    if re.search(r"\bSXM\d?\b|\bHGX\b", s):
        return "SXM"
    if re.search(r"\bPCIE\b|\bPCI E\b", s):
        return "PCIE"
    if family == "H100" and re.search(r"\bHBM3\b", s):
        return "SXM"  # NVML's name for the SXM5 part: "NVIDIA H100 80GB HBM3"
    if family == "H100" and re.search(r"\bHBM2E\b", s):
        return "PCIE"
    return None


def _memory_in_name(s: str) -> float | None:
    found = re.findall(r"\b(\d{2,3}) ?GB\b", s)
    return float(found[0]) if found else None


def canonical_gpu(name: str, memory_gb: float | None = None) -> GpuMatch:
    """Map a provider's or NVML's GPU name to a canonical key.

    ``memory_gb`` is the per-GPU memory when the source gives it (RunPod memoryInGb, Vast gpu_ram/1024):
    it tells A100 40GB from 80GB and H100 NVL from SXM when the name does not.
    """
    raw = name if isinstance(name, str) else str(name)
    s = _normalise(raw)
    if not s or _EXCLUDE.search(s):
        return GpuMatch(None, False, raw)
    for family, pattern, forms, default_form, bare_is_exact in _FAMILIES:
        if not pattern.search(s):
            continue
        approximate = False
        form = _form(s, family) if set(forms) != {None} else None
        if form not in forms:
            form_from_memory = None
            mem_hint = _memory_in_name(s) or memory_gb
            if mem_hint is not None:
                # H100 NVL is the only 94 GB H100: memory names the form.
                for f, sizes in forms.items():
                    if any(abs(mem_hint - size) / size < 0.06 for size in sizes) and f != default_form:
                        if f is not None and len([ff for ff in forms if ff]) > 1 and _unique_size(forms, f, mem_hint):
                            form_from_memory = f
            form = form_from_memory or default_form
            if not bare_is_exact and form_from_memory is None:
                approximate = True
        sizes = forms[form]
        mem = _memory_in_name(s)
        if mem is None:
            mem = memory_gb
        if len(sizes) == 1:
            key = next(iter(sizes.values()))
            size = next(iter(sizes))
            # (A name like "GH200 480GB" gives the whole module's memory: over twice the GPU's, ignore it.)
            if mem is not None and 0 < mem <= 2 * size and abs(mem - size) / size > 0.15:
                # A different memory size of a known card (e.g. a 48 GB RTX 4090): keep it distinct.
                key = f"{key.rsplit('-', 1)[0]}-{round(mem)}"
                approximate = True
            return GpuMatch(key, approximate, raw)
        if mem is None:
            # A100 with no memory given: the 80 GB part is the one clouds rent for LLMs.
            return GpuMatch(sizes[max(sizes)], True, raw)
        best = min(sizes, key=lambda size: abs(size - mem))
        return GpuMatch(sizes[best], approximate, raw)
    return GpuMatch(None, False, raw)


def _unique_size(forms: dict[str | None, dict[int, str]], form: str, mem: float) -> bool:
    """True when ``mem`` matches a size that only ``form`` has (94 GB -> NVL for H100)."""
    for f, sizes in forms.items():
        if f == form:
            continue
        if any(abs(mem - size) / size < 0.06 for size in sizes):
            return False
    return True


def known_keys() -> list[str]:
    return list(GPUS)
