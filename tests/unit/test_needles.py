"""The transcript search used by the privacy tests finds exactly what a naive search finds."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.support.needles import find_leaks

pytestmark = pytest.mark.unit


def naive(data: bytes, needles: dict[str, list[bytes]]) -> list[str]:
    return [name for name, group in needles.items() if any(n in data for n in group)]


@pytest.mark.parametrize("seed", range(6))
def test_planted_needles_are_found_at_every_offset_and_nothing_else(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    needles = {
        "doubles": [struct.pack("<d", v) for v in rng.normal(size=300)],
        "ints": [int(v).to_bytes(8, "little", signed=True)
                 for v in rng.integers(-(2**62), 2**62, 300)],
        "text": [f'"id-{v}"'.encode() for v in rng.integers(0, 10**9, 300)],
        "long": [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(5)],
    }
    assert find_leaks(bytes(data), needles) == naive(bytes(data), needles) == []
    planted = ["doubles", "text"] if seed % 2 else ["ints", "long"]
    for k, name in enumerate(planted):
        needle = needles[name][int(rng.integers(len(needles[name])))]
        at = 1000 * (k + 1) + seed  # every byte alignment over the seeds
        data[at:at + len(needle)] = needle
    assert find_leaks(bytes(data), needles) == naive(bytes(data), needles) == sorted(
        planted, key=list(needles).index)
    tail = needles["doubles"][0]  # at the very end, too
    assert "doubles" in find_leaks(bytes(data[:-8]) + tail, needles)
