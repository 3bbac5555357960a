"""The rows a per-row window remembers, in flat arrays instead of Python objects.

A 24 h window of a large customer holds 100,000 rows and more. As a dict of
Python ints that costs ~150 bytes a row (a dict entry, a 128-bit key object, a
value object); here a row costs one slot of an open-addressing hash table kept
in arrays: key (two 64-bit halves), time in microseconds, a 32-bit word for the
caller (group and contribution numbers) and a state byte, 29 bytes a slot,
between 1/2 and 3/4 of the slots in use (about 50 bytes a row). Rows are also listed by time bucket (slot
numbers, 4 bytes each) so that the ones leaving the window are found without
looking at the others.

Keys: a UUID (its 128-bit value) or an int are stored as they are; any other
key (a text id) gets a number of its own, kept in two dicts while its row is
in the table.
"""

from __future__ import annotations

import uuid
from array import array
from collections.abc import Iterator
from typing import Any

__all__ = ["RowTable"]

_M64 = (1 << 64) - 1
_M128 = (1 << 128) - 1
_FIB = 0x9E3779B97F4A7C15
_FREE, _USED, _GONE = 0, 1, 2


class RowTable:
    """key -> (time in microseconds, 32-bit word); expiry by time bucket."""

    def __init__(self, bucket_us: int, capacity: int = 1024) -> None:
        self._b = bucket_us
        self._ids: dict[Any, int] = {}  # keys that are neither UUID nor int -> their number
        self._keys: dict[int, Any] = {}
        self._next_id = 0
        self.n = 0
        self._alloc(max(16, capacity))

    def _alloc(self, cap: int) -> None:
        self._cap = cap
        zero = bytes(8 * cap)
        self._hi = array("Q", zero)
        self._lo = array("Q", zero)
        self._t = array("q", zero)
        self._w = array("I", bytes(4 * cap))
        self._state = bytearray(cap)
        self._filled = 0  # used + gone
        self._buckets: dict[int, array[int]] = {}

    def __len__(self) -> int:
        return self.n

    # -- keys ------------------------------------------------------------------
    def _int_key(self, key: Any, create: bool) -> int | None:
        if isinstance(key, uuid.UUID):
            return key.int
        if isinstance(key, int) and not isinstance(key, bool):
            return key & _M128
        k = self._ids.get(key)
        if k is None and create:
            k = self._ids[key] = self._next_id
            self._keys[k] = key
            self._next_id += 1
        return k

    def _forget(self, k: int) -> None:
        if self._keys:
            key = self._keys.pop(k, None)
            if key is not None:
                del self._ids[key]

    def _find(self, k: int) -> tuple[int, bool]:
        """(slot of k, True) or (slot to put k in, False)."""
        hi, lo = k >> 64, k & _M64
        cap = self._cap
        i = ((((lo ^ hi) * _FIB) & _M64) >> 16) % cap
        st, H, L = self._state, self._hi, self._lo
        free = -1
        while True:
            s = st[i]
            if s == _FREE:
                return (free if free >= 0 else i), False
            if s == _USED:
                if L[i] == lo and H[i] == hi:
                    return i, True
            elif free < 0:
                free = i
            i += 1
            if i == cap:
                i = 0

    # -- rows ------------------------------------------------------------------
    def pop(self, key: Any) -> tuple[int, int, int] | None:
        """Remove `key`'s row: (time, word, key number), or None when absent."""
        k = self._int_key(key, create=False)
        if k is None:
            return None
        i, found = self._find(k)
        if not found:
            return None
        self._state[i] = _GONE
        self.n -= 1
        self._forget(k)
        return self._t[i], self._w[i], k

    def put(self, key: Any, t_us: int, word: int) -> int:
        """Add a row for `key` (not in the table: pop it first); returns its key number."""
        if (self._filled + 1) * 4 > self._cap * 3:
            self._rehash()
        k = self._int_key(key, create=True)
        assert k is not None
        i, found = self._find(k)
        assert not found, "put of a key already in the table"
        if self._state[i] == _FREE:
            self._filled += 1
        self._set(i, k >> 64, k & _M64, t_us, word)
        self.n += 1
        return k

    def _set(self, i: int, hi: int, lo: int, t_us: int, word: int) -> None:
        """Fill slot `i` and list it under its time bucket."""
        self._state[i] = _USED
        self._hi[i], self._lo[i], self._t[i], self._w[i] = hi, lo, t_us, word
        b = self._buckets.get(t_us // self._b)
        if b is None:
            b = self._buckets[t_us // self._b] = array("I")
        b.append(i)

    def _rehash(self) -> None:
        st, H, L, T, W = self._state, self._hi, self._lo, self._t, self._w
        live = [i for i in range(self._cap) if st[i] == _USED]
        self._alloc(max(16, len(live) * 2))  # half in use after it
        for i in live:
            j, _ = self._find((H[i] << 64) | L[i])
            self._set(j, H[i], L[i], T[i], W[i])
        self._filled = len(live)

    def expire(self, edge_us: int, inclusive: bool) -> Iterator[tuple[int, int]]:
        """Remove the rows with time < edge (or <= with `inclusive`): yields (word, key number)."""
        b = self._b
        edge_idx = edge_us // b
        st, T = self._state, self._t
        for idx in sorted(i for i in self._buckets if i <= edge_idx):
            keep = array("I")
            for i in self._buckets.pop(idx):
                if st[i] != _USED or T[i] // b != idx:
                    continue  # removed, or the slot holds a row of another bucket now
                t = T[i]
                if t < edge_us or (inclusive and t == edge_us):
                    st[i] = _GONE
                    self.n -= 1
                    k = (self._hi[i] << 64) | self._lo[i]
                    self._forget(k)
                    yield self._w[i], k
                else:
                    keep.append(i)
            if keep:
                self._buckets[idx] = keep
