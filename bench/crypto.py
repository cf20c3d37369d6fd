"""Paillier throughput per value at 2048 bits: naive phe, ours, and SecretFlow's HEU ZPaillier.

    python bench/crypto.py [--values 1400] [--json OUT] [--heu-python PATH]

* **naive phe** — python-paillier's ``PaillierPublicKey.encrypt`` / ``decrypt``, one value per
  ciphertext (what a straightforward implementation does).
* **ours** — the contribution encoding: 14 values packed in one plaintext (mpc.packing), one
  CRT decryption for all 14. Encryption is reported twice: *sustained* (each ciphertext pays
  for its own obfuscator rⁿ — the honest steady-state rate) and *hot path* (the obfuscator was
  precomputed by a node's pool, as in an evaluation).
* **HEU ZPaillier** — ``sf-heu`` (a bench-only dependency) in its own virtual environment
  (``.bench/heu-venv``, created with pip on first use, or ``--heu-python``), run in a
  subprocess: it is a C++ library with its own Python 3.11 wheel, kept out of the project's
  environment.

Everything runs on one thread, in the same run, with the same number of values. Keys:
``enc_values_per_s`` and ``dec_values_per_s`` per implementation, and the ratios to HEU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import venv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phe
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpc.contribution import EXPOSURE_FIELDS, FIELDS, ContributionVector
from mpc.obfuscators import obfuscator
from mpc.paillier import PaillierKeyPair
from mpc.secure_sum import decrypt_total, encrypt_contribution

KEY_BITS = 2048
HEU_VENV = Path(__file__).resolve().parent.parent / ".bench" / "heu-venv"
HEU_SCRIPT = """
import json, sys, time
from heu import phe
count = int(sys.argv[1])
kit = phe.setup(phe.SchemaType.ZPaillier, int(sys.argv[2]))
encryptor, decryptor = kit.encryptor(), kit.decryptor()
started = time.perf_counter()
cts = [encryptor.encrypt_raw(i) for i in range(count)]
enc = time.perf_counter() - started
started = time.perf_counter()
values = [decryptor.decrypt_raw(c) for c in cts]
dec = time.perf_counter() - started
assert values == list(range(count))
print(json.dumps({"enc_values_per_s": count / enc, "dec_values_per_s": count / dec}))
"""


def naive_phe(count: int) -> dict[str, float]:
    public, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
    started = time.perf_counter()
    cts = [public.encrypt(i) for i in range(count)]
    enc = time.perf_counter() - started
    started = time.perf_counter()
    values = [private.decrypt(c) for c in cts]
    dec = time.perf_counter() - started
    assert values == list(range(count))
    return {"enc_values_per_s": count / enc, "dec_values_per_s": count / dec}


def ours(count: int) -> dict[str, float]:
    keypair = PaillierKeyPair.generate(KEY_BITS)
    key = keypair.public
    per = len(FIELDS)
    vectors = [ContributionVector(model_partial=i / 8, **dict.fromkeys(EXPOSURE_FIELDS, i))
               for i in range(-(-count // per))]
    started = time.perf_counter()
    sustained = [encrypt_contribution(v, key) for v in vectors]
    enc = time.perf_counter() - started
    ready = [obfuscator(key) for _ in vectors]  # what a node's pool holds before the load
    pool = iter(ready)
    started = time.perf_counter()
    hot = [encrypt_contribution(v, key, obfuscate=lambda: next(pool)) for v in vectors]
    enc_hot = time.perf_counter() - started
    started = time.perf_counter()
    decrypted = [decrypt_total(c, keypair) for c in sustained]
    dec = time.perf_counter() - started
    assert decrypted == vectors and [decrypt_total(c, keypair) for c in hot[:3]] == vectors[:3]
    values = len(vectors) * per
    return {"enc_values_per_s": values / enc, "enc_values_per_s_hot_path": values / enc_hot,
            "dec_values_per_s": values / dec, "values_per_ciphertext": per}


def heu_python(explicit: str | None, console: Console) -> Path:
    if explicit:
        return Path(explicit)
    python = HEU_VENV / "bin" / "python"
    if not python.exists():
        with console.status("creating .bench/heu-venv with sf-heu (bench-only, once)…"):
            venv.create(HEU_VENV, with_pip=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", "sf-heu"], check=True)
    return python


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
    python = heu_python(args.heu_python, console)
    with console.status("HEU ZPaillier…"):
        results["heu_zpaillier"] = heu(args.values, python)
    heu_row = results["heu_zpaillier"]
    table = Table(title=f"Paillier per value, {KEY_BITS}-bit keys, {args.values} values, "
                  "one thread, same run")
    for column in ("implementation", "encrypt values/s", "decrypt values/s",
                   "encrypt ÷ HEU", "decrypt ÷ HEU"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    rows = [("naive phe", results["naive_phe"]["enc_values_per_s"], results["naive_phe"]),
            ("ours, sustained (pays its rⁿ)", results["ours"]["enc_values_per_s"],
             results["ours"]),
            ("ours, hot path (pooled rⁿ)", results["ours"]["enc_values_per_s_hot_path"],
             results["ours"]),
            ("HEU ZPaillier", heu_row["enc_values_per_s"], heu_row)]
    for label, enc, row in rows:
        table.add_row(label, f"{enc:,.0f}", f"{row['dec_values_per_s']:,.0f}",
                      f"{enc / heu_row['enc_values_per_s']:.2f}x",
                      f"{row['dec_values_per_s'] / heu_row['dec_values_per_s']:.2f}x")
    console.print(table)
    results["ratios_to_heu"] = {
        "ours_enc_sustained": results["ours"]["enc_values_per_s"] / heu_row["enc_values_per_s"],
        "ours_enc_hot_path":
            results["ours"]["enc_values_per_s_hot_path"] / heu_row["enc_values_per_s"],
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
