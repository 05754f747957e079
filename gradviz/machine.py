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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_KEEP_BYTES = 1 << 30


@cache
def keep_freed_memory() -> bool:
    """Let glibc keep the memory torch frees for the next batch of the same shapes instead of unmapping it and
    faulting it in again; True where that was set (glibc on Linux).

    By default glibc serves large blocks with mmap and hands them back on free, so every batch of a long CPU run
    pays page faults and zeroing: on the interpretability verdict's slice (1 model × 4 methods × 14 metrics × 250
    digits, 2-core AMD EPYC) 20 s of 57 s were kernel time, and this cut the run to 44 s. The price is that the
    process keeps its peak memory until it exits, so the CLI's batch commands call this and the app does not."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
