"""Follow the jsonlog files of one server: rotation, truncation, partial lines, restarts.

Every file matching the pattern in the log directory (and the server's
``pg_current_logfile('jsonlog')`` when known, whatever its name) has a read
position: device, inode and byte offset. A round reads each file from its
position to its end, oldest first, and hands out complete lines only: a
partial last line stays in the file until its newline arrives. So

- **rotation** by time, size, ``pg_rotate_logfile()`` or a new
  ``log_filename`` is a new file, read from its first byte; the old one is
  read to its end first (the server writes no more to it);
- **truncation** (the file is shorter than the position, as with
  ``log_truncate_on_rotation``, or its first bytes changed: truncated and
  written past the old position since, or another file on a recycled inode)
  starts the file over from byte 0;
- a file **renamed** keeps its position (it is found again by inode), a path
  that now holds another inode is a new file;
- a line longer than ``max_line_bytes`` is skipped to its newline and counted.

The positions are part of the pack's saved state (written with the counters
after every round), so a restart goes on from where the last saved round
ended: lines written while the collector was down are read, none twice.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Follower", "Position", "Round"]

CHUNK = 1 << 20
#: bytes that identify a file: a jsonlog line's time stamp, pid, session id and line number
HEAD = 128


@dataclass(slots=True)
class Position:
    """Where reading one file goes on."""

    dev: int
    ino: int
    offset: int = 0
    #: inside a line longer than max_line_bytes: skip to its newline
    skipping: bool = False
    #: the file's first bytes (hex), to tell it from another file on a recycled inode
    head: str = ""

    def to_json(self) -> list[int | str]:
        """The position as JSON."""
        return [self.dev, self.ino, self.offset, int(self.skipping), self.head]

    @classmethod
    def from_json(cls, v: Any) -> Position:
        """Back from to_json (ValueError on anything else)."""
        if (not isinstance(v, list) or len(v) != 5 or not all(isinstance(x, int) for x in v[:4])
                or not isinstance(v[4], str)):
            raise ValueError(f"not a saved position: {v!r}")
        return cls(v[0], v[1], v[2], bool(v[3]), v[4])


@dataclass(slots=True)
class Round:
    """What one round saw besides the lines."""

    bytes: int = 0
    #: bytes the positions moved past (whole lines, skipped ones included)
    consumed: int = 0
    too_long: int = 0
    new_files: int = 0
    truncations: int = 0
    errors: list[str] = field(default_factory=list)


def _head(path: str, n: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(n).hex()
    except OSError:
        return ""


class Follower:
    """Read positions of the files of one log directory."""

    def __init__(self, directory: str, pattern: str, *, max_line_bytes: int = 1 << 20,
                 max_bytes_per_round: int = 64 << 20, start_at_end: bool = True) -> None:
        self.directory = directory
        self.pattern = pattern
        self.max_line_bytes = max_line_bytes
        self.max_bytes_per_round = max_bytes_per_round
        #: files present at the very first start are read from their end (not their history)
        self.start_at_end = start_at_end
        self.positions: dict[str, Position] = {}
        self.started = False

    # -- state --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The positions as JSON."""
        return {"files": {p: pos.to_json() for p, pos in sorted(self.positions.items())}}

    def restore(self, state: dict[str, Any]) -> None:
        """Take positions saved by state() (ValueError when they are not)."""
        files = state.get("files")
        if not isinstance(files, dict):
            raise ValueError("saved log positions have no files")
        self.positions = {str(p): Position.from_json(v) for p, v in files.items()}
        self.started = True

    # -- reading ------------------------------------------------------------------
    def files(self, current: str | None = None) -> list[tuple[str, os.stat_result]]:
        """The files to read this round, oldest first (by modification time, then name)."""
        paths = set(glob.glob(os.path.join(glob.escape(self.directory), self.pattern)))
        paths.update(self.positions)
        if current:
            paths.add(current if os.path.isabs(current)
                      else os.path.join(self.directory, os.path.basename(current)))
        found = []
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if not os.path.isfile(p):
                continue
            found.append((p, st))
        found.sort(key=lambda x: (x[1].st_mtime_ns, x[0]))
        return found

    def read(self, rnd: Round, current: str | None = None) -> Iterator[bytes]:
        """Complete lines (without newline) of every file, oldest file first.

        `rnd` fills in as it goes. A position has moved past a line when it is
        yielded: the caller counts it before asking for the next.
        """
        found = self.files(current)
        by_inode = {(pos.dev, pos.ino): (p, pos) for p, pos in self.positions.items()}
        present = {p for p, _ in found}
        fresh: dict[str, Position] = {}
        for path, st in found:
            pos = self.positions.get(path)
            if pos is None or (pos.dev, pos.ino) != (st.st_dev, st.st_ino):
                moved = by_inode.get((st.st_dev, st.st_ino))
                if moved is not None and moved[0] not in present:
                    pos = moved[1]  # the same file under a new name
                elif not self.started and self.start_at_end:
                    pos = Position(st.st_dev, st.st_ino, st.st_size)
                else:
                    pos = Position(st.st_dev, st.st_ino, 0)
                    if self.started:
                        rnd.new_files += 1
            if st.st_size < pos.offset or (st.st_size > pos.offset and pos.head
                                           and _head(path, len(pos.head) // 2)
                                           not in ("", pos.head)):
                # shorter than what was read, or other bytes where it began: truncated (and
                # perhaps written past the old position since), or another file on the inode
                rnd.truncations += 1
                pos.offset = 0
                pos.skipping = False
                pos.head = ""
            fresh[path] = pos
        # files gone from the directory are forgotten
        self.positions = fresh
        self.started = True
        for path, st in found:
            pos = self.positions[path]
            if st.st_size == pos.offset or rnd.bytes >= self.max_bytes_per_round:
                continue
            try:
                yield from self._read_file(path, pos, rnd)
            except OSError as e:
                rnd.errors.append(f"{path}: {e.strerror or e}")

    def _read_file(self, path: str, pos: Position, rnd: Round) -> Iterator[bytes]:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != (pos.dev, pos.ino):
                return  # replaced between stat and open: next round
            if len(pos.head) < 2 * HEAD:
                pos.head = f.read(HEAD).hex()
            f.seek(pos.offset)
            first = pos.offset
            try:
                yield from self._lines(f, pos, rnd)
            finally:
                rnd.consumed += pos.offset - first

    def _lines(self, f: Any, pos: Position, rnd: Round) -> Iterator[bytes]:
        pending = b""
        while rnd.bytes < self.max_bytes_per_round:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            rnd.bytes += len(chunk)
            data = pending + chunk
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    break
                line = data[start:nl]
                start = nl + 1
                if pos.skipping:
                    pos.skipping = False
                    pos.offset += len(line) + 1
                    continue
                if len(line) > self.max_line_bytes:
                    rnd.too_long += 1
                    pos.offset += len(line) + 1
                    continue
                pos.offset += len(line) + 1
                yield line
            pending = data[start:]
            if len(pending) > self.max_line_bytes:
                # a line too long to keep: drop what we have, skip to its newline
                if not pos.skipping:
                    rnd.too_long += 1
                    pos.skipping = True
                pos.offset += len(pending)
                pending = b""
        # a partial last line stays unread: its position is its first byte
