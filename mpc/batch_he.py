"""Portfolio re-scoring ciphertexts: thousands of subjects per ciphertext (TenSEAL).

A portfolio job adds every member's share for each subject of a chunk, slot by slot:

* the **model partial** (real-valued) in one CKKS vector — ring degree 8,192, one 60-bit data
  prime plus a 60-bit special prime (120 of the 218 bits SEAL allows at 128-bit security),
  scale 2^40, 4,096 subjects per ciphertext. Only additions happen, so no level is consumed;
  a member's partial is clamped to ±:data:`MAX_ABS_PARTIAL`, which keeps a total of
  :data:`MAX_MEMBERS` members far inside the data prime (2^(11+5+40) < 2^59);
* the **exposures** (exact integers) in BFV — same ring degree, coefficient moduli 60/60/60,
  plaintext modulus the 60-bit prime :data:`PLAIN_MODULUS` (≡ 1 mod 2·8,192, so 8,192 slots).
  The nine integer fields of :mod:`mpc.contribution` are packed three lanes per subject
  (:data:`LANES`), each field a fixed-width bit field sized for the total of ``MAX_MEMBERS``
  members at its per-member cap (:data:`FIELD_CAPS`): every lane's total stays below 2^58 <
  ``PLAIN_MODULUS / 2``, so a sum never wraps and unpacking is exact by construction (checked when
  this module loads). A chunk of 4,096 subjects is one CKKS and two BFV ciphertexts (655 KB),
  about 790 KB with its pseudonyms: under gRPC's 1 MiB message limit.

Decrypted partials are rounded to :data:`PARTIAL_DECIMALS` decimals before they leave this
module (the CKKS error is about 1e-7 after a few additions): what the key holder reports never
carries the raw CKKS noise (the Li-Micciancio attack needs it). Encryption randomness comes
from SEAL's own CSPRNG; it cannot be injected (tests inject values, not randomness). A context
from a peer is accepted only with exactly these parameters (SEAL's parameter id, a hash of
them, is compared).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
import numpy.typing as npt
import tenseal as ts

from fedcredit.errors import ErrorCode, FedCreditError, InvalidRequestError
from mpc.contribution import EXPOSURE_FIELDS, MAX_EXPOSURE

POLY_DEGREE = 8192
CKKS_COEFF_BITS = (60, 60)
CKKS_SCALE_BITS = 40
BFV_COEFF_BITS = (60, 60, 60)
CKKS_SLOTS = POLY_DEGREE // 2
BFV_SLOTS = POLY_DEGREE
#: Subjects per chunk: one CKKS ciphertext's slots.
CHUNK_SUBJECTS = CKKS_SLOTS
MAX_MEMBERS = 32
MAX_ABS_PARTIAL = 1024.0
PARTIAL_DECIMALS = 6
#: A member's value of each integer field is clamped to this (inclusive) cap.
FIELD_CAPS: dict[str, int] = {
    "outstanding_debt_cents": MAX_EXPOSURE - 1,
    "active_loans": (1 << 15) - 1,
    "open_credit_lines": (1 << 15) - 1,
    "accounts_30dpd": (1 << 14) - 1,
    "accounts_90dpd": (1 << 14) - 1,
    "inquiries_90d": (1 << 14) - 1,
    "has_record": 1,
    "flagged": 1,
    "with_active_loans": 1,
}
#: The integer fields, lane by lane, lowest bits first.
LANES: tuple[tuple[str, ...], ...] = (
    ("outstanding_debt_cents",),
    ("active_loans", "open_credit_lines", "has_record", "flagged", "with_active_loans"),
    ("accounts_30dpd", "accounts_90dpd", "inquiries_90d"),
)
LANE_BITS = 58


def _field_width(name: str) -> int:
    """Bits for the total of MAX_MEMBERS members at the cap."""
    return (MAX_MEMBERS * FIELD_CAPS[name]).bit_length()


def _plain_modulus() -> int:
    """The smallest prime above 2^59 that is 1 mod 2·POLY_DEGREE (batching needs it). SEAL
    decodes slots as centred residues, so lane totals must stay below half of it: 2^58."""
    step = 2 * POLY_DEGREE
    t = (1 << 59) + 1
    while not gmpy2.is_prime(t):
        t += step
    return t


PLAIN_MODULUS = _plain_modulus()


def _lane_offsets() -> dict[str, tuple[int, int]]:
    """Each field's (lane, bit offset); every lane must fit LANE_BITS."""
    offsets: dict[str, tuple[int, int]] = {}
    for lane, names in enumerate(LANES):
        offset = 0
        for name in names:
            offsets[name] = (lane, offset)
            offset += _field_width(name)
        assert offset <= LANE_BITS, f"lane {lane} needs {offset} bits"
    return offsets


_OFFSETS = _lane_offsets()
assert set(_OFFSETS) == set(EXPOSURE_FIELDS) == set(FIELD_CAPS)
assert 1 << LANE_BITS < PLAIN_MODULUS // 2
assert (MAX_MEMBERS * MAX_ABS_PARTIAL) * 2.0**CKKS_SCALE_BITS < 2.0 ** (CKKS_COEFF_BITS[0] - 1)

IntMatrix = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_CAPS = np.array([FIELD_CAPS[f] for f in EXPOSURE_FIELDS], dtype=np.int64)


@dataclass(frozen=True)
class BatchShare:
    """Shares (or totals) for ``subjects`` subjects: partials ``(S,)``, exposures ``(S, 9)`` in
    :data:`mpc.contribution.EXPOSURE_FIELDS` order."""

    partials: FloatArray
    exposures: IntMatrix

    def __post_init__(self) -> None:
        if self.partials.ndim != 1 or self.exposures.shape != (
            len(self.partials), len(EXPOSURE_FIELDS)
        ):
            raise ValueError("partials (S,) and exposures (S, 9) must describe the same subjects")
        if not 0 < len(self.partials) <= CHUNK_SUBJECTS:
            raise ValueError(f"a share covers 1..{CHUNK_SUBJECTS} subjects")

    @property
    def subjects(self) -> int:
        return len(self.partials)

    def __add__(self, other: BatchShare) -> BatchShare:
        return BatchShare(self.partials + other.partials, self.exposures + other.exposures)


def clamp(partials: FloatArray, exposures: IntMatrix) -> tuple[BatchShare, int]:
    """A member's share bounded to what the ciphertexts carry, and how many values were
    clamped (non-finite partials count 0 and are clamped too)."""
    finite = np.where(np.isfinite(partials), partials, 0.0)
    bounded = np.clip(finite, -MAX_ABS_PARTIAL, MAX_ABS_PARTIAL)
    ints = np.clip(exposures.astype(np.int64), 0, _CAPS)
    changed = int(np.count_nonzero(bounded != partials)) + int(
        np.count_nonzero(ints != exposures))
    return BatchShare(bounded.astype(np.float64), ints), changed


def pack_lanes(exposures: IntMatrix) -> npt.NDArray[np.uint64]:
    """``(lanes, S)``: each lane the sum of its fields shifted to their offsets."""
    out = np.zeros((len(LANES), len(exposures)), dtype=np.uint64)
    for column, name in enumerate(EXPOSURE_FIELDS):
        lane, offset = _OFFSETS[name]
        out[lane] |= exposures[:, column].astype(np.uint64) << np.uint64(offset)
    return out


def unpack_lanes(lanes: npt.NDArray[np.uint64]) -> IntMatrix:
    out = np.empty((lanes.shape[1], len(EXPOSURE_FIELDS)), dtype=np.int64)
    for column, name in enumerate(EXPOSURE_FIELDS):
        lane, offset = _OFFSETS[name]
        mask = np.uint64((1 << _field_width(name)) - 1)
        out[:, column] = ((lanes[lane] >> np.uint64(offset)) & mask).astype(np.int64)
    return out


def _ckks_context() -> ts.Context:
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_DEGREE,
                         coeff_mod_bit_sizes=list(CKKS_COEFF_BITS))
    context.global_scale = 2.0**CKKS_SCALE_BITS
    return context


def _bfv_context() -> ts.Context:
    return ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=POLY_DEGREE,
                      plain_modulus=PLAIN_MODULUS, coeff_mod_bit_sizes=list(BFV_COEFF_BITS))


def _parms_id(context: ts.Context) -> tuple[int, ...]:
    return tuple(context.seal_context().data.key_parms_id())


@functools.cache
def _expected(kind: str) -> tuple[int, ...]:
    """SEAL's id of this module's parameters: a hash of them, the same everywhere."""
    return _parms_id(_ckks_context() if kind == "ckks" else _bfv_context())


def _public_bytes(context: ts.Context) -> bytes:
    public = context.copy()
    public.make_context_public()
    return bytes(public.serialize(save_public_key=True, save_secret_key=False,
                                  save_galois_keys=False, save_relin_keys=False))


_FRAME = struct.Struct(">4sII")
_MAGIC = b"FCB1"


@dataclass(frozen=True)
class BatchPublicKey:
    """The requester's two public contexts (no secret key, no evaluation keys)."""

    ckks: ts.Context
    bfv: ts.Context
    wire: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.wire).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchPublicKey:
        """A peer's key; :class:`InvalidRequestError` unless both contexts are public, well
        formed and exactly of this module's parameters."""
        try:
            magic, ckks_len, bfv_len = _FRAME.unpack_from(data)
            if magic != _MAGIC or _FRAME.size + ckks_len + bfv_len != len(data):
                raise ValueError("bad frame")
            ckks = ts.context_from(data[_FRAME.size:_FRAME.size + ckks_len])
            bfv = ts.context_from(data[_FRAME.size + ckks_len:])
        except (ValueError, struct.error, RuntimeError, TypeError) as exc:
            raise InvalidRequestError(f"malformed portfolio key: {exc}") from None
        for kind, context in (("ckks", ckks), ("bfv", bfv)):
            if _parms_id(context) != _expected(kind):
                raise InvalidRequestError(f"the {kind} context has other parameters")
            if context.is_private() or not context.has_public_key():
                raise InvalidRequestError(f"the {kind} context must hold exactly a public key")
        ckks.global_scale = 2.0**CKKS_SCALE_BITS
        return cls(ckks=ckks, bfv=bfv, wire=bytes(data))


def _frame(ckks: bytes, bfv: bytes) -> bytes:
    return _FRAME.pack(_MAGIC, len(ckks), len(bfv)) + ckks + bfv


@dataclass(frozen=True)
class BatchKeyPair:
    """The requester's secret contexts for one job (fresh per job) and their public half."""

    ckks: ts.Context
    bfv: ts.Context
    public: BatchPublicKey

    @classmethod
    def generate(cls) -> BatchKeyPair:
        ckks, bfv = _ckks_context(), _bfv_context()
        wire = _frame(_public_bytes(ckks), _public_bytes(bfv))
        return cls(ckks=ckks, bfv=bfv, public=BatchPublicKey.from_bytes(wire))


@dataclass(frozen=True)
class BatchCipher:
    """Encrypted shares (or their sum) of ``subjects`` subjects."""

    subjects: int
    partials: ts.CKKSVector
    lanes: tuple[ts.BFVVector, ...]


def _bfv_count(subjects: int) -> int:
    return -(-len(LANES) * subjects // BFV_SLOTS)


def encrypt(key: BatchPublicKey, share: BatchShare) -> BatchCipher:
    """The share under the requester's key (values must already be within bounds: see
    :func:`clamp`)."""
    if np.any(np.abs(share.partials) > MAX_ABS_PARTIAL) or np.any(share.exposures < 0) or (
        np.any(share.exposures > _CAPS)
    ):
        raise ValueError("a share must be clamped before it is encrypted")
    flat = pack_lanes(share.exposures).ravel().astype(np.int64)  # < 2^58: fits int64
    lanes = tuple(ts.bfv_vector(key.bfv, flat[i:i + BFV_SLOTS].tolist())
                  for i in range(0, len(flat), BFV_SLOTS))
    return BatchCipher(share.subjects, ts.ckks_vector(key.ckks, share.partials.tolist()), lanes)


def add(a: BatchCipher, b: BatchCipher) -> BatchCipher:
    if a.subjects != b.subjects or len(a.lanes) != len(b.lanes):
        raise InvalidRequestError("the accumulator covers another number of subjects")
    return BatchCipher(a.subjects, a.partials + b.partials,
                       tuple(x + y for x, y in zip(a.lanes, b.lanes, strict=True)))


def rerandomize(key: BatchPublicKey, cipher: BatchCipher) -> BatchCipher:
    """The same sums under fresh randomness (a fresh encryption of zeros added)."""
    zero = BatchShare(np.zeros(cipher.subjects),
                      np.zeros((cipher.subjects, len(EXPOSURE_FIELDS)), dtype=np.int64))
    return add(cipher, encrypt(key, zero))


def to_wire(cipher: BatchCipher) -> tuple[bytes, tuple[bytes, ...]]:
    return bytes(cipher.partials.serialize()), tuple(bytes(v.serialize()) for v in cipher.lanes)


def from_wire(key: BatchPublicKey, subjects: int, partials: bytes,
              lanes: Sequence[bytes]) -> BatchCipher:
    """A peer's ciphertexts; :class:`InvalidRequestError` if they do not parse or are not
    shaped for ``subjects`` subjects."""
    if not 0 < subjects <= CHUNK_SUBJECTS or len(lanes) != _bfv_count(subjects):
        raise InvalidRequestError("the accumulator is not shaped for this chunk")
    try:
        ckks = ts.ckks_vector_from(key.ckks, partials)
        bfv = tuple(ts.bfv_vector_from(key.bfv, data) for data in lanes)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise InvalidRequestError(f"malformed accumulator: {exc}") from None
    expected = [min(BFV_SLOTS, len(LANES) * subjects - i)
                for i in range(0, len(LANES) * subjects, BFV_SLOTS)]
    if ckks.size() != subjects or [v.size() for v in bfv] != expected:
        raise InvalidRequestError("the accumulator is not shaped for this chunk")
    return BatchCipher(subjects, ckks, bfv)


def decrypt(keys: BatchKeyPair, cipher: BatchCipher) -> BatchShare:
    """The totals; a ciphertext that does not decrypt to in-range values fails opaquely."""
    try:
        partials = np.asarray(cipher.partials.decrypt(keys.ckks.secret_key()), dtype=np.float64)
        flat = np.concatenate([np.asarray(v.decrypt(keys.bfv.secret_key()), dtype=np.int64)
                               for v in cipher.lanes])
    except (ValueError, RuntimeError, TypeError):
        raise FedCreditError(code=ErrorCode.DECRYPTION_FAILED) from None
    if len(flat) != len(LANES) * cipher.subjects or np.any(flat < 0) or np.any(
        flat >= 1 << LANE_BITS
    ) or not np.all(np.abs(partials) <= MAX_MEMBERS * MAX_ABS_PARTIAL + 1):
        raise FedCreditError(code=ErrorCode.DECRYPTION_FAILED)
    lanes = flat.astype(np.uint64).reshape(len(LANES), cipher.subjects)
    return BatchShare(np.round(partials, PARTIAL_DECIMALS), unpack_lanes(lanes))

