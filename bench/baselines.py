"""In-process baselines for bench/evaluate.py: pooled plaintext, and our secure-sum recipe
against python-paillier's high-level API ("naive phe") on the same vectors and key."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import phe
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fedcredit.demo.population import Population, pooled_result
from fedcredit.demo.runner import LOGIT_TOLERANCE
from mpc.contribution import EXPOSURE_FIELDS, FIELDS, FIXED_FIELDS, ContributionVector
from mpc.obfuscators import ObfuscatorPool
from mpc.paillier import DEFAULT_KEY_BITS, PaillierKeyPair
from mpc.secure_sum import CIPHERTEXTS, accumulate, decrypt_total
from node.contribution import contribution_for
from node.ingest.snapshot import EXPOSURE_COLUMNS, SubjectRecord
from scoring.assessment import assess


def member_vectors(population: Population, index: int) -> dict[str, ContributionVector]:
    """Each member's contribution for one subject, computed as the node does."""
    out: dict[str, ContributionVector] = {}
    for inst in population.institutions:
        member = inst.profile.member_id
        record = None
        if inst.has_record[index]:
            record = SubjectRecord(
                exposures={c: int(inst.exposures[c][index]) for c in EXPOSURE_COLUMNS},
                features={k: float(v[index]) for k, v in inst.features.items()},
            )
        out[member] = contribution_for(record, population.models[member])
    return out


def pooled_plaintext_ms(population: Population, indices: list[int]) -> dict[str, Any]:
    """Per evaluation: the joint result (logit, exposures, score, grade) over pooled data."""
    model = next(iter(population.models.values()))
    rounds = max(1, 2000 // len(indices))
    started = time.perf_counter()
    for _ in range(rounds):
        for index in indices:
            pooled = pooled_result(population, index)
            slots: dict[str, Any] = {f"reason_{g}": v for g, v in pooled.reason_groups.items()}
            total = ContributionVector(
                model_partial=pooled.joint_logit - model.intercept,
                has_record=pooled.institutions_with_records,
                with_active_loans=pooled.institutions_with_active_loans,
                **slots,
                **pooled.exposures,
            )
            assess(total, model.intercept, model.scale)
    evals = rounds * len(indices)
    return {"per_eval_ms": (time.perf_counter() - started) * 1000 / evals, "evals": evals}


def _recipe(
    keypair: PaillierKeyPair, contributors: list[ContributionVector], own: ContributionVector,
    djn: ObfuscatorPool,
) -> tuple[ContributionVector, float, float]:
    """The wire path's crypto, each encryption paying for its own DJN obfuscator (no pool)."""
    started = time.perf_counter()
    accumulator = None
    for vector in contributors:
        accumulator = accumulate(accumulator, vector, keypair.public, obfuscate=djn.make)
    assert accumulator is not None
    routed = time.perf_counter()
    total = decrypt_total(accumulator, keypair) + own
    done = time.perf_counter()
    return total, (routed - started) * 1000, (done - routed) * 1000


def _naive_phe(
    public: phe.PaillierPublicKey, private: phe.PaillierPrivateKey,
    contributors: list[ContributionVector], own: ContributionVector,
) -> tuple[ContributionVector, float, float]:
    started = time.perf_counter()
    accumulator: list[phe.EncryptedNumber] | None = None
    for vector in contributors:
        encrypted = [public.encrypt(getattr(vector, name)) for name in FIELDS]
        accumulator = encrypted if accumulator is None else [
            a + b for a, b in zip(accumulator, encrypted, strict=True)
        ]
    assert accumulator is not None
    routed = time.perf_counter()
    values = [private.decrypt(c) for c in accumulator]
    parts: dict[str, Any] = {n: float(v) if n in FIXED_FIELDS else int(v)
                             for n, v in zip(FIELDS, values, strict=True)}
    total = ContributionVector(**parts) + own
    done = time.perf_counter()
    return total, (routed - started) * 1000, (done - routed) * 1000


def _summary(encrypt_add: list[float], decrypt: list[float]) -> dict[str, float]:
    totals = [a + b for a, b in zip(encrypt_add, decrypt, strict=True)]
    return {
        "encrypt_add_ms": float(np.median(encrypt_add)),
        "decrypt_ms": float(np.median(decrypt)),
        "total_ms": float(np.median(totals)),
        "total_mean_ms": float(np.mean(totals)),
    }


def crypto_baselines(
    population: Population, indices: list[int], console: Console
) -> dict[str, Any]:
    members = [inst.profile.member_id for inst in population.institutions]
    with console.status(f"generating a {DEFAULT_KEY_BITS}-bit Paillier key…"):
        public, private = phe.generate_paillier_keypair(n_length=DEFAULT_KEY_BITS)
        keypair = PaillierKeyPair.from_primes(private.p, private.q)
        djn = ObfuscatorPool(keypair.public, capacity=0)
        djn.make()  # the key's fixed-base table, built once as a node builds it
    times: dict[str, tuple[list[float], list[float]]] = {
        "recipe": ([], []), "naive_phe": ([], [])}
    disagreements = 0
    with Progress(TextColumn("[bold]crypto baselines[/]"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("crypto", total=len(indices))
        for k, index in enumerate(indices):
            vectors = member_vectors(population, index)
            requester = members[k % len(members)]
            contributors = [v for m, v in vectors.items() if m != requester]
            own = vectors[requester]
            # Interleave, alternating which goes first, so drift hits both alike.
            order = ("recipe", "naive_phe") if k % 2 == 0 else ("naive_phe", "recipe")
            results = {}
            for name in order:
                if name == "recipe":
                    total, enc, dec = _recipe(keypair, contributors, own, djn)
                else:
                    total, enc, dec = _naive_phe(public, private, contributors, own)
                times[name][0].append(enc)
                times[name][1].append(dec)
                results[name] = total
            a, b = results["recipe"], results["naive_phe"]
            if any(abs(getattr(a, n) - getattr(b, n)) > LOGIT_TOLERANCE
                   for n in FIXED_FIELDS) or any(
                getattr(a, n) != getattr(b, n) for n in EXPOSURE_FIELDS
            ):
                disagreements += 1
            progress.advance(task)
    return {
        "key_bits": keypair.public.bits,
        "members": len(members),
        "contributors_per_eval": len(members) - 1,
        "fields": len(FIELDS),
        "ciphertexts_encrypted_per_eval": (len(members) - 1) * CIPHERTEXTS,
        "naive_ciphertexts_encrypted_per_eval": (len(members) - 1) * len(FIELDS),
        "evals": len(indices),
        "disagreements": disagreements,
        "recipe": _summary(*times["recipe"]),
        "naive_phe": _summary(*times["naive_phe"]),
    }
