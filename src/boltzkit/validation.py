"""Parameter constraints, written once (in the spirit of scikit-learn's ``_parameter_constraints``).

Every public constructor and command-line flag checks its numbers through these helpers, so a
bad value always ends in the same one-line :class:`~boltzkit.errors.ConfigurationError`
naming the parameter, the rule and the value given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, Literal, overload

from .errors import ConfigurationError


def is_integer(value: Any) -> bool:
    """True for Python/NumPy integers (``bool`` excluded: ``True`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@overload
def check_int(name: str, value: Any, least: int | None = None, most: int | None = None,
              optional: Literal[False] = False) -> int: ...
@overload
def check_int(name: str, value: Any, least: int | None = None, most: int | None = None,
              optional: bool = False) -> int | None: ...
def check_int(name: str, value: Any, least: int | None = None, most: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` as an ``int`` in [least, most]; ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if (not is_integer(value) or (least is not None and value < least)
            or (most is not None and value > most)):
        rule = "an integer" + (f" ≥ {least}" if least is not None else "") + (
            f" ≤ {most}" if most is not None else "")
        prefix = "None or " if optional else ""
        raise ConfigurationError(f"{name} must be {prefix}{rule}, got {value!r}")
    return int(value)


@overload
def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, optional: Literal[False] = False) -> float: ...
@overload
def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, optional: bool = False) -> float | None: ...
def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, optional: bool = False) -> float | None:
    """``value`` as a finite ``float`` in the interval given (open ends where asked)."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rule = (f"in {lo}, {hi}" if low is not None and high is not None
                else f"> {low:g}" if low is not None and low_open
                else f"≥ {low:g}" if low is not None
                else f"< {high:g}" if high is not None and high_open
                else f"≤ {high:g}" if high is not None else "finite")
        raise ConfigurationError(f"{name} must be a number {rule}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


#: dtypes a model may be built in
FLOAT_DTYPES = {"float32": "float32", "float64": "float64"}


def parse_dtype(name: Any) -> Any:
    """``torch.float32`` or ``torch.float64`` from its name (as config.json stores it)."""
    import torch

    if isinstance(name, torch.dtype):
        name = str(name).removeprefix("torch.")
    if name not in FLOAT_DTYPES:
        raise ConfigurationError(f"dtype must be 'float32' or 'float64', got {name!r}")
    return getattr(torch, name)
