"""What a result was measured on, in words: every number gradviz writes names its machine."""
from __future__ import annotations

import platform
from datetime import UTC, datetime
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


def run_stamp(device: str | torch.device, version: str) -> dict:
    """What every result's provenance ends with: the machine, the versions (gradviz's is `version`: this module
    sits below the package's own __init__) and when it finished."""
    return {"device": device_description(device),
            "versions": {"gradviz": version, "torch": torch.__version__, "python": platform.python_version()},
            "finished": datetime.now(UTC).isoformat(timespec="seconds")}
