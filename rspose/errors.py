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

import os
import traceback
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


class UserError(ValueError):
    """A mistake in what the user gave (config value, file, data), with a message naming it and what was expected.

    A subclass of :class:`ValueError`, so code that catches ``ValueError`` keeps working."""


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
