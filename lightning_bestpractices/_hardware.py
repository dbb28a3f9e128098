"""What a measurement ran on, for metrics.json, the results page and the benchmark JSONs.

Imports torch but not Lightning (its version comes from the package metadata), so benchmarks that time imports
can use it.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["hardware"]


def hardware(*, load: bool = False) -> dict[str, Any]:
    """CPU model, cores, torch threads, accelerator, torch / Lightning / Python versions; with ``load=True`` also
    the 1, 5 and 15 minute load averages (other jobs on a shared machine).

    Examples:
        >>> sorted(hardware())[:4]
        ['accelerator', 'cpu', 'cpu_count', 'lightning']
    """
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        lightning = metadata.version("lightning")
    except metadata.PackageNotFoundError:
        lightning = "not installed"
    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
    out = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "accelerator": accelerator, "torch": torch.__version__, "lightning": lightning,
           "python": platform.python_version()}
    if load:
        try:
            out["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            out["load_average_1_5_15min"] = None
    return out
