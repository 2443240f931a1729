"""Banners of libraries that say nothing about the command's work, kept off the console.

- ``No CUDA runtime is found, using CUDA_HOME='/usr/local/cuda'``: torch logs it when
  ``torch.utils.cpp_extension`` is imported (inductor imports it to compile, on CPU too) on a
  machine with a CUDA toolkit but no GPU. A CPU run uses no CUDA at all, so it is noise there;
  only this message is dropped, every other warning of that logger is kept.
"""

from __future__ import annotations

import logging

#: (logger, start of the message) of each banner dropped.
BANNERS = (("torch.utils.cpp_extension", "No CUDA runtime is found"),)


class _DropBanner(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_banners() -> None:
    """Drop :data:`BANNERS` from their loggers (once per process)."""
    for name, start in BANNERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropBanner) and f.start == start for f in logger.filters):
            logger.addFilter(_DropBanner(start))
