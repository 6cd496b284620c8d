"""User errors: what the ``rspose`` command reports as one message and exit code 2 instead of a traceback.

The rule (applied by :func:`user_error_message` in :func:`rspose.main.main`, the one error boundary of every
``rspose`` subcommand: fit, validate, test, predict, infer, export, compare, synth), deliberately narrow so that real
bugs keep their traceback:

* :class:`UserError` anywhere (raise it for a bad config value, a bad file, bad data); a checkpoint refused
  under weights-only loading (:class:`rspose.models.checkpoint.UnsafeCheckpointError`) is one;
* :class:`FileNotFoundError` (a path in the config or on the command line that does not exist), and the
  :class:`OSError` s that name a path the user chose: :class:`PermissionError` (an unwritable output folder),
  :class:`IsADirectoryError`, :class:`NotADirectoryError`, :class:`FileExistsError`;
* a command-line / config parse error (``jsonargparse.ArgumentError``: unknown key, wrong type, bad YAML; the
  argparse errors of infer / export / compare / synth, raised as :class:`UserError` by :class:`ArgumentParser`);
* a :class:`ValueError` raised by rspose's own code (the innermost traceback frame is in the ``rspose`` package)
  while the command *prepares* the run: building the objects of the config (``instantiate_classes``), setting
  up the data and the model (Lightning's ``_call_setup_hook``) or the optimizer
  (``_init_optimizers_and_lr_schedulers``): those are checks of config values and data.

A plain :class:`ValueError` anywhere else (once the run is going: a training, evaluation or prediction step, the
end of an epoch; or from torch, numpy or Lightning at any time) is NOT a user error: it is a bug and keeps its
traceback. rspose's checks of files and values raise :class:`UserError`, which holds everywhere.

Everything else propagates unchanged. A user error is printed as exactly one line, ``rspose: error: MESSAGE``
(a message of several lines is joined into one). ``RSPOSE_DEBUG=1`` in the environment shows the full traceback
for user errors too.
"""

from __future__ import annotations

import argparse
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


def raised_in_rspose(exc: BaseException) -> bool:
    """Whether the innermost traceback frame of ``exc`` is a file of the ``rspose`` package."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    try:
        return Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


#: functions on the call stack while a command prepares its run (config objects, data and model set-up, optimizer).
PREPARING_FUNCTIONS = ("instantiate_classes", "_call_setup_hook", "_init_optimizers_and_lr_schedulers")


def raised_while_preparing(exc: BaseException) -> bool:
    """Whether ``exc`` was raised under one of :data:`PREPARING_FUNCTIONS` (see the rule above)."""
    return any(frame.name in PREPARING_FUNCTIONS for frame in traceback.extract_tb(exc.__traceback__))


def _rspose_value_error_in_chain(exc: BaseException) -> BaseException | None:
    """The first exception of ``exc``'s cause / context chain that is a :class:`UserError` or a plain ValueError
    raised by rspose, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError) or (type(current) is ValueError and raised_in_rspose(current)):
            return current
        current = current.__cause__ or current.__context__
    return None


def user_error_message(exc: BaseException) -> str | None:
    """The one-message text for ``exc`` if it is a user error by the rule above, else ``None``."""
    try:
        from jsonargparse import ArgumentError
    except ImportError:  # pragma: no cover - jsonargparse is a dependency
        ArgumentError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, ValueError) and not isinstance(exc, UserError) and raised_while_preparing(exc):
        # jsonargparse wraps a constructor's refusal in its own ValueError ("Does not validate against any of the
        # Union subtypes"): report the refusal itself
        cause = _rspose_value_error_in_chain(exc)
        if cause is not None and cause is not exc:
            return user_error_message(cause) or str(cause).strip()
    if isinstance(exc, (UserError, ArgumentError) + PATH_ERRORS) or (
        type(exc) is ValueError and raised_in_rspose(exc) and raised_while_preparing(exc)
    ):
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, PATH_ERRORS) and exc.filename and str(exc.filename) not in text:
            text = f"{text}: {exc.filename}"
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    return None


#: OSErrors about a path the user gave (a missing input, an unwritable output folder): user errors.
PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def format_user_error(message: str) -> str:
    """The one line the ``rspose`` command prints for a user error."""
    return f"rspose: error: {message}\n"


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the ``rspose`` subcommands outside the LightningCLI: a usage error raises :class:`UserError`
    (``infer: the following arguments are required: --config (see rspose infer --help)``), so that it is reported
    by the one error boundary like every other user error instead of printing the usage and its own prefix."""

    def error(self, message: str):  # type: ignore[override]
        name = self.prog.removeprefix("rspose ").strip() or self.prog
        raise UserError(f"{name}: {message} (see {self.prog} --help)")
