"""Configuration errors that name the user's key.

A domain checks its arguments when it is built, before any data is generated, and raises
:class:`ConfigError` with the key the user sets (``data.init_args.size``), what it got and
what it expects. The CLI prints that one line and exits with status 2, as it does for a
misspelled key (:func:`config_error_line` finds the line inside the errors jsonargparse
wraps it in)."""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, TypeVar

T = TypeVar("T")

DATA = "data.init_args"  # where a DataModule's arguments live in a config


class ConfigError(ValueError):
    """A configuration value the run cannot use; the message starts with the key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


def at_least(minimum: int, prefix: str = DATA, **values: object) -> None:
    """Each of ``values`` (by argument name) is an integer >= ``minimum``, else a
    :class:`ConfigError` naming ``prefix.<name>``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ConfigError(f"{prefix}.{name}", f"must be an integer >= {minimum}; got {value!r}")


def in_range(low: float, high: float, prefix: str = DATA, **values: object) -> None:
    """Each of ``values`` is a number in [low, high], else a :class:`ConfigError`."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
            raise ConfigError(f"{prefix}.{name}", f"must be a number in [{low}, {high}]; got {value!r}")


def dataclass_from(cls: type[T], values: dict[str, Any] | None, key: str) -> T:
    """``cls(**values)`` for a dataclass of settings; an unknown setting is a
    :class:`ConfigError` that names ``key`` and lists the known ones."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values or {}) - set(known))
    if unknown:
        raise ConfigError(key, f"unknown setting {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return cls(**(values or {}))


# A ConfigError's line as jsonargparse quotes it among a Union's errors ("  - data.init_args.x: ...")
_QUOTED = re.compile(r"^\s*(?:-\s+)?((?:data|model|trainer)(?:\.init_args)?\.[\w.]+: .+)$", re.MULTILINE)


def config_error_line(error: BaseException) -> str | None:
    """The one line to show for ``error``: its :class:`ConfigError`, found in the chain of
    causes or, where jsonargparse has turned it into text, in the message; None if there is none."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConfigError):
            return str(e).splitlines()[0]
        e = e.__cause__ or e.__context__
    found = _QUOTED.search(str(error))
    return found.group(1) if found else None
