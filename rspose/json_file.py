"""Reading a JSON file the user named, with the one pair of error messages every reader shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rspose.errors import UserError


def load_json(path: str | Path, what: str) -> Any:
    """The parsed content of the JSON file ``path``; ``what`` names the file's role in the errors.

    Raises:
        FileNotFoundError: ``"{what} {path} does not exist"``.
        UserError: ``"{what} {path} is not valid JSON: {reason}"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None
