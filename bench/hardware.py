"""What the benchmarks need to know about the hardware: dense (no sparsity) bf16 tensor-core peaks in
TFLOP/s from the vendors' data sheets, for model FLOPs utilisation (MFU)."""
from __future__ import annotations

# first match of the device name wins (so "H100 PCIe" before "H100")
PEAK_BF16_TFLOPS = [("H200", 989.4), ("GH200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
                    ("H800", 989.4), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1), ("RTX A6000", 154.8),
                    ("A6000", 154.8), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0)]


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """The dense bf16 peak of the device called `device_name`, `override` when given, None if unknown."""
    if override:
        return override
    for key, tf in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tf
    return None
