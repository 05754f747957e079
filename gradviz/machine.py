"""What a result was measured on, in words: every number gradviz writes names its machine."""
from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_name() -> str:
    """The CPU's model name (e.g. "AMD EPYC 7B13"), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str | torch.device) -> str:
    """"NVIDIA H200" for a GPU; "cpu (AMD EPYC 7B13, 2 threads)" for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
