"""Paillier throughput per value at 2048 bits: naive phe, ours, and SecretFlow's HEU ZPaillier.

    python bench/crypto.py [--values 1400] [--json OUT] [--heu-python PATH]

* **naive phe** — python-paillier's ``PaillierPublicKey.encrypt`` / ``decrypt``, one value per
  ciphertext (what a straightforward implementation does).
* **ours** — the contribution encoding: 14 values packed in one plaintext (mpc.packing), one
  CRT decryption for all 14. Encryption is reported four ways: *sustained* (each ciphertext
  pays for its own DJN obfuscator ``h_s^alpha``, alpha of 448 bits (mpc.djn.EXPONENT_BITS) from the
  key's fixed-base table — the honest steady-state rate; the one-off table build is reported
  apart), *sustained with HEU's exponent length* (alpha of 1,024 bits, like for like with HEU),
  *textbook* (each pays a full ``rⁿ``, as for a key published without a DJN base) and *hot
  path* (the obfuscator was precomputed by a node's pool, as in an evaluation).
* **HEU ZPaillier** — ``sf-heu`` (a bench-only dependency) in its own virtual environment
  (``.bench/heu-venv``, created with pip on first use, or ``--heu-python``), run in a
  subprocess: it is a C++ library with its own Python 3.11 wheel, kept out of the project's
  environment.

Everything runs on one thread, in the same run, with the same number of values. Keys:
``enc_values_per_s`` and ``dec_values_per_s`` per implementation, and the ratios to HEU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phe
from machine import bench_python
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpc.contribution import EXPOSURE_FIELDS, FIELDS, ContributionVector
from mpc.djn import EXPONENT_BITS, DjnObfuscator
from mpc.obfuscators import ObfuscatorPool, obfuscator
from mpc.paillier import PaillierKeyPair, PaillierPublicKey
from mpc.secure_sum import decrypt_total, encrypt_contribution

KEY_BITS = 2048
HEU_SCRIPT = """
import json, sys, time
from heu import phe
count = int(sys.argv[1])
kit = phe.setup(phe.SchemaType.ZPaillier, int(sys.argv[2]))
encryptor, evaluator, decryptor = kit.encryptor(), kit.evaluator(), kit.decryptor()
started = time.perf_counter()
cts = [encryptor.encrypt_raw(i) for i in range(count)]
enc = time.perf_counter() - started
started = time.perf_counter()
sums = [evaluator.add(c, c) for c in cts]
add = time.perf_counter() - started
started = time.perf_counter()
values = [decryptor.decrypt_raw(c) for c in cts]
dec = time.perf_counter() - started
assert values == list(range(count)) and decryptor.decrypt_raw(sums[-1]) == 2 * (count - 1)
print(json.dumps({"enc_values_per_s": count / enc, "add_values_per_s": count / add,
                  "dec_values_per_s": count / dec}))
"""


def naive_phe(count: int) -> dict[str, float]:
    public, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
    started = time.perf_counter()
    cts = [public.encrypt(i) for i in range(count)]
    enc = time.perf_counter() - started
    started = time.perf_counter()
    sums = [c + c for c in cts]
    add = time.perf_counter() - started
    started = time.perf_counter()
    values = [private.decrypt(c) for c in cts]
    dec = time.perf_counter() - started
    assert values == list(range(count)) and private.decrypt(sums[-1]) == 2 * (count - 1)
    return {"enc_values_per_s": count / enc, "add_values_per_s": count / add,
            "dec_values_per_s": count / dec}


def ours(count: int) -> dict[str, float]:
    keypair = PaillierKeyPair.generate(KEY_BITS)
    key = keypair.public
    per = len(FIELDS)
    vectors = [ContributionVector(model_partial=i / 8, **dict.fromkeys(EXPOSURE_FIELDS, i))
               for i in range(-(-count // per))]
    djn = ObfuscatorPool(key, capacity=0)  # no pool: every ciphertext makes its own obfuscator
    started = time.perf_counter()
    djn.make()  # builds the key's fixed-base table (once per key per process)
    table_s = time.perf_counter() - started
    started = time.perf_counter()
    sustained = [encrypt_contribution(v, key, obfuscate=djn.make) for v in vectors]
    enc = time.perf_counter() - started
    heu_length = DjnObfuscator.build(key.n, key.hs or 0, exponent_bits=key.n.bit_length() // 2)
    started = time.perf_counter()
    like_heu = [encrypt_contribution(v, key, obfuscate=lambda: int(heu_length.obfuscator()))
                for v in vectors]
    enc_like_heu = time.perf_counter() - started
    bare = PaillierPublicKey.from_modulus(key.n)  # the same key published without a base
    started = time.perf_counter()
    textbook = [encrypt_contribution(v, bare) for v in vectors]
    enc_textbook = time.perf_counter() - started
    ready = [obfuscator(key) for _ in vectors]  # what a node's pool holds before the load
    pool = iter(ready)
    started = time.perf_counter()
    hot = [encrypt_contribution(v, key, obfuscate=lambda: next(pool)) for v in vectors]
    enc_hot = time.perf_counter() - started
    started = time.perf_counter()
    sums = [key.add(c.ciphertexts[0], c.ciphertexts[0]) for c in sustained]  # 14 values each
    add = time.perf_counter() - started
    started = time.perf_counter()
    decrypted = [decrypt_total(c, keypair) for c in sustained]
    dec = time.perf_counter() - started
    doubled = dataclasses.replace(sustained[-1], ciphertexts=(sums[-1],))
    assert decrypted == vectors and decrypt_total(doubled, keypair) == vectors[-1] + vectors[-1]
    assert [decrypt_total(c, keypair) for c in (*hot[:3], *textbook[:3], *like_heu[:3])
            ] == vectors[:3] * 3
    values = len(vectors) * per
    return {"enc_values_per_s": values / enc, "enc_values_per_s_hot_path": values / enc_hot,
            "enc_values_per_s_textbook": values / enc_textbook, "add_values_per_s": values / add,
            "enc_values_per_s_heu_exponent": values / enc_like_heu,
            "dec_values_per_s": values / dec, "values_per_ciphertext": per,
            "djn_exponent_bits": EXPONENT_BITS, "djn_table_build_s": table_s}


def heu(count: int, python: Path) -> dict[str, float]:
    result = subprocess.run([str(python), "-c", HEU_SCRIPT, str(count), str(KEY_BITS)], check=True,
                            capture_output=True, text=True, env={**os.environ})
    doc: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=int, default=1400)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--heu-python", help="a Python with sf-heu installed")
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {}
    with console.status("naive phe…"):
        results["naive_phe"] = naive_phe(args.values)
    with console.status("ours (packed)…"):
        results["ours"] = ours(args.values)
    python = bench_python("heu-venv", "sf-heu", args.heu_python, console.status)
    with console.status("HEU ZPaillier…"):
        results["heu_zpaillier"] = heu(args.values, python)
    heu_row = results["heu_zpaillier"]
    table = Table(title=f"Paillier per value, {KEY_BITS}-bit keys, {args.values} values, "
                  "one thread, same run")
    for column in ("implementation", "encrypt values/s", "add values/s", "decrypt values/s",
                   "encrypt ÷ HEU", "add ÷ HEU", "decrypt ÷ HEU"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    rows = [("naive phe", results["naive_phe"]["enc_values_per_s"], results["naive_phe"]),
            (f"ours, sustained (DJN h_s^alpha, alpha of {EXPONENT_BITS} bits)",
             results["ours"]["enc_values_per_s"], results["ours"]),
            ("ours, sustained with HEU's alpha of 1,024 bits",
             results["ours"]["enc_values_per_s_heu_exponent"], results["ours"]),
            ("ours, textbook (rⁿ per ciphertext)", results["ours"]["enc_values_per_s_textbook"],
             results["ours"]),
            ("ours, hot path (pooled obfuscator)", results["ours"]["enc_values_per_s_hot_path"],
             results["ours"]),
            ("HEU ZPaillier", heu_row["enc_values_per_s"], heu_row)]
    for label, enc, row in rows:
        table.add_row(label, f"{enc:,.0f}", f"{row['add_values_per_s']:,.0f}",
                      f"{row['dec_values_per_s']:,.0f}",
                      f"{enc / heu_row['enc_values_per_s']:.2f}x",
                      f"{row['add_values_per_s'] / heu_row['add_values_per_s']:.2f}x",
                      f"{row['dec_values_per_s'] / heu_row['dec_values_per_s']:.2f}x")
    console.print(table)
    console.print(f"DJN fixed-base table for the key: built once in "
                  f"{results['ours']['djn_table_build_s']:.2f} s")
    results["ratios_to_heu"] = {
        "ours_enc_sustained": results["ours"]["enc_values_per_s"] / heu_row["enc_values_per_s"],
        "ours_enc_heu_exponent":
            results["ours"]["enc_values_per_s_heu_exponent"] / heu_row["enc_values_per_s"],
        "ours_enc_textbook":
            results["ours"]["enc_values_per_s_textbook"] / heu_row["enc_values_per_s"],
        "ours_enc_hot_path":
            results["ours"]["enc_values_per_s_hot_path"] / heu_row["enc_values_per_s"],
        "ours_add": results["ours"]["add_values_per_s"] / heu_row["add_values_per_s"],
        "ours_dec": results["ours"]["dec_values_per_s"] / heu_row["dec_values_per_s"],
    }
    results["meta"] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                       "machine": platform.platform(), "cpus": os.cpu_count(),
                       "command": " ".join(sys.argv), "key_bits": KEY_BITS,
                       "values": args.values}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
