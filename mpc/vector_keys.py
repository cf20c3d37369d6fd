"""Make or load an engine's keys by name (the session spec says which engine)."""

from __future__ import annotations

from mpc.vector_ckks import CkksVectorKeyHolder, CkksVectorScheme
from mpc.vector_he import EngineName, VectorKeyHolder, VectorScheme
from mpc.vector_paillier import PaillierVectorKeyHolder, PaillierVectorScheme


def generate_key_holder(engine: EngineName, *, paillier_bits: int = 2048) -> VectorKeyHolder:
    if engine is EngineName.PAILLIER:
        return PaillierVectorKeyHolder.generate(paillier_bits)
    return CkksVectorKeyHolder.generate()


def load_scheme(engine: EngineName, data: bytes) -> VectorScheme:
    if engine is EngineName.PAILLIER:
        return PaillierVectorScheme.from_public_bytes(data)
    return CkksVectorScheme.from_public_bytes(data)
