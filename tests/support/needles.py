"""Fast search of many small needles (leaked values) in large transcripts.

Naively ``needle in data`` for thousands of needles over hundreds of megabytes of ciphertext
takes minutes. Two exact shortcuts: 8-byte binary needles (doubles, int64) are matched by
reading the data as 64-bit words at each of the 8 byte alignments and testing set membership
with numpy; printable text needles can only occur inside printable runs of the data, which
are few and short in ciphertext, so only those runs are searched. Anything else is searched
directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{4,}")


def _is_text(needle: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in needle)


def _binary_hits(data: bytes, needles: Sequence[bytes]) -> set[bytes]:
    if not needles:
        return set()
    wanted = np.unique(np.frombuffer(b"".join(needles), dtype="<u8"))
    hits: set[bytes] = set()
    for offset in range(8):
        usable = (len(data) - offset) // 8 * 8
        if usable <= 0:
            continue
        words = np.frombuffer(data, dtype="<u8", count=usable // 8, offset=offset)
        at = np.minimum(np.searchsorted(wanted, words), len(wanted) - 1)
        found = words[wanted[at] == words]
        hits.update(int(w).to_bytes(8, "little") for w in np.unique(found))
    return hits


def find_leaks(data: bytes, needles: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The names of the needle groups any of whose needles occurs in ``data``."""
    binary = [n for group in needles.values() for n in group if len(n) == 8 and not _is_text(n)]
    binary_hits = _binary_hits(data, binary)
    text = b"\x00".join(_PRINTABLE_RUN.findall(data))
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
