"""What every benchmark row records about where it ran: device, torch, threads, date and the
machine's load."""

from __future__ import annotations

import datetime as dt
import os

import torch

from normbench.engine.environment import cpu_name


def environment(device: torch.device) -> dict:
    """Device name, torch version, threads and date recorded beside every row."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": dt.date.today().isoformat(),
    }


def load_average() -> str:
    """The 1-minute load average (other processes competing for the CPU), or '' if unknown."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return ""
