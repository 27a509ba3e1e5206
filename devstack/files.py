"""Writing files that hold secrets; reading the stack's small JSON records."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Writes data to path readable by the owner only.

    The file is created 0600 from the start (and an existing one is narrowed first): a chmod
    after writing would leave a window in which the secret is readable by others.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def read_json(path: Path) -> dict[str, int]:
    """A JSON object the dev stack wrote (ports.json), or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
