"""torch's "No CUDA runtime is found, using CUDA_HOME=..." banner is kept off a CPU machine's
console by every normbench command; the logger's other warnings still come through."""

from __future__ import annotations

import logging

from normbench.cli.quiet import quiet_banners

LOGGER = "torch.utils.cpp_extension"


def test_the_cuda_home_banner_is_dropped_and_nothing_else(run_cli, caplog):
    logger = logging.getLogger(LOGGER)
    saved = list(logger.filters)
    logger.filters.clear()  # as in a fresh process (an earlier test may have run a command)
    try:
        run_cli("data", "--help")  # any command installs the filter
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
            logger.warning("another warning of that logger")
        assert [r.getMessage() for r in caplog.records] == ["another warning of that logger"]
        quiet_banners()  # once: a second call adds no second filter
        assert len(logger.filters) == 1
    finally:
        logger.filters[:] = saved
