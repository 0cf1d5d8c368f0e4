"""Text derived from large inputs that do not change between renders, cached by the inputs' digest.

A render parses and prints the upstream charts' CRDs every time: megabytes of YAML that only a new
chart pin changes. What is derived from them is kept in the user's cache directory
(`~/.cache/jan-server/<kind>/<sha256 of the input>`), so the next render reads it back instead of
deriving it again; `kind` names the derivation and its version, so a change to it is a new key. The
cache is an optimisation only: unreadable or unwritable (a read-only home), the text is derived.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

CACHE_DIR = Path.home() / ".cache" / "jan-server"


def cached_text(kind: str, source: str, derive: Callable[[], str]) -> str:
    """`derive()`, which depends on `source` only, read from the cache when it holds it."""
    path = CACHE_DIR / kind / hashlib.sha256(source.encode()).hexdigest()
    try:
        return path.read_text()
    except OSError:
        pass
    text = derive()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text)
        temporary.replace(path)
    except OSError:
        pass
    return text
