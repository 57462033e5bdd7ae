"""GPU-name normalisation: every name the providers and NVML use maps to one canonical key."""

import pytest

from pricing.gpus import GPUS, canonical_gpu, gpu_label

# (name as a source writes it, per-GPU memory the source gives, expected key, approximate?)
ALIASES = [
    # NVML names (the local GPU, so a measured run matches price rows)
    ("NVIDIA H100 80GB HBM3", None, "H100-SXM-80", False),
    ("NVIDIA H100 PCIe", None, "H100-PCIE-80", False),
    ("NVIDIA H100 NVL", None, "H100-NVL-94", False),
    ("NVIDIA H200", None, "H200-SXM-141", False),
    ("NVIDIA H200 NVL", None, "H200-NVL-141", False),
    ("NVIDIA A100-SXM4-80GB", None, "A100-SXM-80", False),
    ("NVIDIA A100-SXM4-40GB", None, "A100-SXM-40", False),
    ("NVIDIA A100-PCIE-40GB", None, "A100-PCIE-40", False),
    ("NVIDIA A100 80GB PCIe", None, "A100-PCIE-80", False),
    ("NVIDIA L40S", None, "L40S-48", False),
    ("NVIDIA L4", None, "L4-24", False),
    ("NVIDIA A10", None, "A10-24", False),
    ("NVIDIA A10G", None, "A10G-24", False),
    ("NVIDIA RTX A6000", None, "A6000-48", False),
    ("NVIDIA RTX 6000 Ada Generation", None, "RTX6000ADA-48", False),
    ("NVIDIA GeForce RTX 4090", None, "RTX4090-24", False),
    ("NVIDIA GeForce RTX 5090", None, "RTX5090-32", False),
    ("NVIDIA GH200 480GB", None, "GH200-96", False),
    ("Tesla V100-SXM2-16GB", None, "V100-16", False),
    ("Tesla T4", None, "T4-16", False),
    # RunPod displayName / id
    ("H100 SXM", 80, "H100-SXM-80", False),
    ("H100 PCIe", 80, "H100-PCIE-80", False),
    ("H100 NVL", 94, "H100-NVL-94", False),
    ("H200 SXM", 141, "H200-SXM-141", False),
    ("A100 SXM", 80, "A100-SXM-80", False),
    ("A100 PCIe", 80, "A100-PCIE-80", False),
    ("RTX 4090", 24, "RTX4090-24", False),
    ("RTX A6000", 48, "A6000-48", False),
    ("L40S", 48, "L40S-48", False),
    # Vast.ai gpu_name with gpu_ram (MB) / 1024
    ("H100 SXM", 81559 / 1024, "H100-SXM-80", False),
    ("H100 PCIE", 81559 / 1024, "H100-PCIE-80", False),
    ("H100 NVL", 95830 / 1024, "H100-NVL-94", False),
    ("A100 SXM4", 81920 / 1024, "A100-SXM-80", False),
    ("A100 PCIE", 40960 / 1024, "A100-PCIE-40", False),
    ("RTX 4090", 24564 / 1024, "RTX4090-24", False),
    ("RTX 5090", 32607 / 1024, "RTX5090-32", False),
    ("RTX 6000Ada", 49140 / 1024, "RTX6000ADA-48", False),
    ("L4", 23034 / 1024, "L4-24", False),
    # Vultr gpu_type: no form factor -> approximate
    ("NVIDIA_H100", None, "H100-SXM-80", True),
    ("NVIDIA_A100", None, "A100-SXM-80", True),
    ("NVIDIA_L40S", None, "L40S-48", False),
    ("NVIDIA_A16", None, "A16-16", False),
    ("NVIDIA_A40", None, "A40-48", False),
    ("AMD_MI300X", None, "MI300X-192", False),
    # Lambda instance names and gpu_description
    ("gpu_1x_h100_pcie", None, "H100-PCIE-80", False),
    ("gpu_8x_h100_sxm5", None, "H100-SXM-80", False),
    ("gpu_8x_a100_80gb_sxm4", None, "A100-SXM-80", False),
    ("gpu_1x_a100_sxm4", 40, "A100-SXM-40", False),
    ("gpu_1x_a10", None, "A10-24", False),
    ("gpu_1x_a6000", None, "A6000-48", False),
    ("gpu_1x_gh200", None, "GH200-96", False),
    ("H100 (80 GB PCIe)", None, "H100-PCIE-80", False),
    ("A100 (40 GB SXM4)", None, "A100-SXM-40", False),
    ("A10 (24 GB PCIe)", None, "A10-24", False),
    # The article: "H100 (80GB HBM3)" names the SXM part; "A100 (80GB)" does not say
    ("H100 (80GB HBM3)", None, "H100-SXM-80", False),
    ("A100 (80GB)", None, "A100-SXM-80", True),
    ("RTX 4090 (24GB)", None, "RTX4090-24", False),
    # Bare family names drop the form factor
    ("H100", 80, "H100-SXM-80", True),
    ("A100", None, "A100-SXM-80", True),
]


@pytest.mark.parametrize("name,memory,key,approximate", ALIASES)
def test_alias_table(name, memory, key, approximate):
    match = canonical_gpu(name, memory)
    assert (match.key, match.approximate) == (key, approximate)
    assert match.raw == name
    assert match.key in GPUS


def test_memory_separates_a100_40_from_80_when_the_name_does_not():
    assert canonical_gpu("A100 SXM4", 40).key == "A100-SXM-40"
    assert canonical_gpu("A100 SXM4", 80).key == "A100-SXM-80"


@pytest.mark.parametrize("name", ["RTX 4080", "Radeon Pro W7900", "Q RTX 8000", "GTX 1080 Ti", "", "RTX 4090 D"])
def test_unknown_names_are_kept_unmatched(name):
    match = canonical_gpu(name)
    assert match.key is None
    assert match.raw == name
    assert gpu_label(match.key) == "unmatched"


def test_a_different_memory_size_of_a_known_card_is_not_merged():
    # Vast.ai lists modded 48 GB RTX 4090s: their price must not pass for a 24 GB card's.
    match = canonical_gpu("RTX 4090", 48)
    assert match.key == "RTX4090-48" and match.approximate


def test_form_factor_is_never_merged():
    keys = {canonical_gpu(n).key for n in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL")}
    assert keys == {"H100-SXM-80", "H100-PCIE-80", "H100-NVL-94"}
