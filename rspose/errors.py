"""User errors: what the ``rspose`` command reports as one message and exit code 2 instead of a traceback.

The rule (applied by :func:`user_error_message` at the top-level ``main()``), deliberately narrow so that real bugs
keep their traceback:

* :class:`UserError` anywhere (raise it for a bad config value, a bad file, bad data);
* :class:`FileNotFoundError` (a path in the config or on the command line that does not exist);
* a command-line / config parse error (``jsonargparse.ArgumentError``: unknown key, wrong type, bad YAML);
* a :class:`ValueError` *raised by rspose's own code* (the innermost traceback frame is a file of the ``rspose``
  package): that is how rspose validates configs and data. A ``ValueError`` raised inside torch, numpy, Lightning
  or any other library is NOT a user error and keeps its traceback.

Everything else propagates unchanged. ``RSPOSE_DEBUG=1`` in the environment shows the full traceback for user
errors too.
"""

from __future__ import annotations

import math
import os
import traceback
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


class UserError(ValueError):
    """A mistake in what the user gave (config value, file, data), with a message naming it and what was expected.

    A subclass of :class:`ValueError`, so code that catches ``ValueError`` keeps working."""


def check_range(key: str, value: float | int | None, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """Raise :class:`UserError` naming ``key``, ``value`` and the valid range unless ``value`` is a finite number in
    [low, high] (``low_open``/``high_open``: the bound itself is excluded; a bound of None: unbounded)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        if low is not None and high is None:
            expected = f"> {low:g}" if low_open else f">= {low:g}"
        elif high is not None and low is None:
            expected = f"< {high:g}" if high_open else f"<= {high:g}"
        else:
            expected = f"in {left}{lo}, {hi}{right}"
        kind = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a finite number"
        raise UserError(f"{key}: {value!r}, expected {kind} {expected}" + (" or null" if allow_none else ""))


def debug_enabled() -> bool:
    """``RSPOSE_DEBUG`` set to anything but empty/``0``: show full tracebacks."""
    return os.environ.get("RSPOSE_DEBUG", "") not in ("", "0")


def _raised_in_rspose(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    try:
        return Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def user_error_message(exc: BaseException) -> str | None:
    """The one-message text for ``exc`` if it is a user error by the rule above, else ``None``."""
    try:
        from jsonargparse import ArgumentError
    except ImportError:  # pragma: no cover - jsonargparse is a dependency
        ArgumentError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, (UserError, FileNotFoundError, ArgumentError)) or (
        type(exc) is ValueError and _raised_in_rspose(exc)
    ):
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
            text = f"{text}: {exc.filename}"
        return text
    return None
