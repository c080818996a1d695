"""A checksums file: {file name: [sha256, ...]} for files whose formats keep no checksum
of their own, written before each file is renamed into place and checked when it is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import file_sha256, sha256
from .writer import atomic_write, atomic_write_text


class Checksums:
    """checksums.json: {file name: [sha256, ...]} of the files whose formats keep no
    checksum of their own (the weights, config.json). A new digest is recorded before
    its file is renamed into place and the old one forgotten after, so whenever the
    process dies the file there matches a recorded digest."""

    def __init__(self, directory: Path, name: str, remedy: str, known: tuple[str, ...]):
        """`name`: the file's (in `directory`); `remedy`: what to do about a damaged file,
        besides restoring it; `known`: the only files it may record."""
        self.directory, self.path, self.remedy = directory, directory / name, remedy
        self.known = known

    def read(self) -> dict[str, list[str]] | None:
        """The recorded digests; None without checksums.json; ValueError if it is damaged."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as error:
            document, reason = None, f"corrupt ({error})"
        else:
            reason = "not a mapping of file names to lists of sha256"
        if not (
            isinstance(document, dict)
            and all(
                isinstance(digests, list) and all(isinstance(d, str) for d in digests)
                for digests in document.values()
            )
        ):
            raise ValueError(f"{self.path}: {reason}; restore it with the model directory")
        unknown = sorted(set(document) - set(self.known))
        if unknown:  # (not a file this directory has: edited by hand, or another's)
            raise ValueError(
                f"{self.path}: records files it never holds ({', '.join(map(repr, unknown))}); "
                f"restore it with the model directory"
            )
        return document

    def write(self, name: str, write: Callable[[Path], Any]) -> None:
        """Write the file `name` through `write(temporary path)`, atomically, its digest
        recorded first."""
        digest: list[str] = []  # the new file's, hashed once

        def publish(temporary: Path) -> None:
            digest.append(file_sha256(temporary))
            self._record(name, [*digest, *self._recorded(name)[:1]])

        atomic_write(self.directory / name, write, before_rename=publish)
        self._record(name, digest)

    def _recorded(self, name: str) -> list[str]:
        try:
            return (self.read() or {}).get(name, [])
        except ValueError:
            return []

    def _record(self, name: str, digests: list[str]) -> None:
        try:
            document = self.read() or {}
        except ValueError:  # damaged: rebuilt from what is written from now on
            document = {}
        atomic_write_text(self.path, json.dumps({**document, name: digests}) + "\n")

    def verify(self, name: str, content: bytes | str, required: bool) -> None:
        """Refuse the file `name` (`content`: its bytes, or its sha256) unless it matches
        a recorded digest; without a record, refuse only if `required`."""
        document, path = self.read(), self.directory / name
        if document is None or name not in document:
            if required:
                raise ValueError(
                    f"{self.path}: missing or without {name}, so {path} cannot be "
                    f"verified; restore it with the model directory, or retrain"
                )
            return
        digest = content if isinstance(content, str) else sha256(content)
        if digest not in document[name]:
            raise ValueError(
                f"{path}: damaged or changed: its sha256 differs from the one recorded "
                f"when it was written ({self.path}); restore the file from a copy, or "
                f"{self.remedy}"
            )
