"""Errors a user can cause. The CLI prints their message alone, without a traceback."""


class NormbenchError(Exception):
    """Base class: the message names what is wrong and how to fix it."""


class ConfigError(NormbenchError):
    """A configuration value is unknown, out of range or inconsistent."""


class DataError(NormbenchError):
    """A dataset is missing or malformed."""


class DivergedError(NormbenchError):
    """The training loss became NaN or infinite: the run diverged."""
