"""Source integrity: a user file may be pinned by SHA-256, in params.yaml (data.sha256) or in a sidecar
`<file>.sha256` (the `sha256sum` format). The hash is taken over the very bytes that are then parsed, so a
file swapped after the check is never the one read."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from poisongate.errors import PoisongateError

HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def pins(path: Path, pinned: str | None) -> list[tuple[str, str]]:
    """Every expected hash for `path`, with where it came from; empty when the file is not pinned."""
    found = []
    if pinned:
        found.append((str(pinned).strip(), "params.yaml data.sha256"))
    side = sidecar(path)
    if side.is_file():
        words = side.read_text(errors="replace").split()
        found.append((words[0] if words else "", str(side)))
    for expected, origin in found:
        if not HEX64.fullmatch(expected):
            raise PoisongateError(f"{origin}: {expected!r} is not a SHA-256 (64 hex digits); "
                                  f"write `sha256sum {path.name}`'s output there")
    return found


def verify(path: Path, raw: bytes, pinned: str | None) -> str:
    """Refuse `raw` (the bytes read from `path`) unless it matches every pin; returns its SHA-256."""
    actual = hashlib.sha256(raw).hexdigest()
    for expected, origin in pins(path, pinned):
        if expected.lower() != actual:
            raise PoisongateError(
                f"{path}: SHA-256 {actual[:16]}... does not match {expected[:16]}... pinned in {origin}; "
                "the file changed since it was pinned: get it again from its source, "
                "or re-pin it if the change is trusted"
            )
    return actual


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes (DVC 3's content hash of a file), read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()
