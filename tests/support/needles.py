"""Fast search of many small needles (leaked values) in large transcripts.

Naively ``needle in data`` for thousands of needles over hundreds of megabytes of ciphertext
takes minutes. Two exact shortcuts: 8-byte binary needles (doubles, int64) are matched at
every byte offset through two 16-bit lookup tables and a full comparison of the few positions
left; printable text needles can only occur inside printable runs of the data at least as long
as they are, which are few and short in ciphertext, so only those runs are searched. Anything
else is searched directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _is_text(needle: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in needle)


def _binary_hits(data: bytes, needles: Sequence[bytes]) -> set[bytes]:
    """The 8-byte needles present at any byte offset. Two 2^16-entry tables (the needles'
    bytes 0-1 and 2-3) leave a fraction of a percent of the positions; those are compared in
    full. Exact: an occurrence passes both tables by construction."""
    if not needles:
        return set()
    wanted = np.unique(np.frombuffer(b"".join(needles), dtype="<u8"))
    first = np.zeros(1 << 16, dtype=bool)
    first[(wanted & np.uint64(0xFFFF)).astype(np.intp)] = True
    second = np.zeros(1 << 16, dtype=bool)
    second[((wanted >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.intp)] = True
    raw = np.frombuffer(data, dtype=np.uint8)
    hits: set[bytes] = set()
    for parity in (0, 1):  # 16-bit halves at even, then odd, byte positions
        count = (len(data) - parity) // 2
        if count < 4:
            continue
        halves = np.frombuffer(data, dtype="<u2", count=count, offset=parity)
        index = np.flatnonzero(first[halves[:-1]])
        index = index[second[halves[index + 1]]]
        position = parity + 2 * index
        position = position[position + 8 <= len(data)]
        if position.size == 0:
            continue
        words = raw[position[:, None] + np.arange(8)].copy().view("<u8").ravel()
        at = np.minimum(np.searchsorted(wanted, words), len(wanted) - 1)
        found = words[wanted[at] == words]
        hits.update(int(w).to_bytes(8, "little") for w in np.unique(found))
    return hits


def _printable_runs(data: bytes, shortest: int) -> bytes:
    """Every run of at least ``shortest`` printable bytes, NUL-separated (a text needle of
    length L can only lie inside a run of at least L)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    printable = ((raw >= 0x20) & (raw <= 0x7E)).astype(np.int8)
    edges = np.diff(printable, prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= shortest
    return b"\x00".join(data[a:b] for a, b in zip(starts[keep], ends[keep], strict=True))


def find_leaks(data: bytes, needles: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The names of the needle groups any of whose needles occurs in ``data``."""
    binary = [n for group in needles.values() for n in group if len(n) == 8 and not _is_text(n)]
    binary_hits = _binary_hits(data, binary)
    shortest = min((len(n) for group in needles.values() for n in group if _is_text(n)),
                   default=4)
    text = _printable_runs(data, max(1, shortest))
    leaks = []
    for name, group in needles.items():
        for needle in group:
            if len(needle) == 8 and not _is_text(needle):
                hit = needle in binary_hits
            elif _is_text(needle):
                hit = needle in text
            else:
                hit = needle in data
            if hit:
                leaks.append(name)
                break
    return leaks
