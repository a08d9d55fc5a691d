"""Parameters are data: validated fields with errors that name the field.

Every configuration in diestack (RTL block configs, chiplet and package descriptors, TOML files)
raises :class:`ConfigError` for a bad value. The CLI turns it into a one-line message and exit
code 2; Python users get an exception whose ``field`` says which parameter was wrong.
"""

import numbers

__all__ = ["ConfigError", "check_int", "check_choice", "check_number"]


class ConfigError(ValueError):
    """A parameter has a bad value. ``field`` names it (dotted for nested ones, e.g. ``dies[2].x``)."""

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def check_int(field, value, *, lo=None, hi=None, choices=None):
    """Return ``value`` if it is an integer within ``[lo, hi]`` (and in ``choices``), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(field, f"must be an integer, not {value!r}")
    value = int(value)
    if choices is not None and value not in choices:
        raise ConfigError(field, f"must be one of {', '.join(map(str, choices))}, not {value}")
    if lo is not None and value < lo:
        raise ConfigError(field, f"must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ConfigError(field, f"must be at most {hi}, not {value}")
    return value


def check_number(field, value, *, lo=None, hi=None, lo_open=False):
    """Return ``value`` as a float if it is a real number within the bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, f"must be a number, not {value!r}")
    value = float(value)
    if value != value:
        raise ConfigError(field, "must be a number, not NaN")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(field, f"must be {'greater than' if lo_open else 'at least'} {lo}, not {value:g}")
    if hi is not None and value > hi:
        raise ConfigError(field, f"must be at most {hi}, not {value:g}")
    return value


def check_choice(field, value, choices):
    """Return ``value`` if it is one of ``choices`` (strings), else raise naming the options."""
    if value not in choices:
        raise ConfigError(field, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value
