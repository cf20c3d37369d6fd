"""The node's long-term Paillier key pair, kept in a 0600 file under its data dir."""

from __future__ import annotations

import logging
from pathlib import Path

from fedcredit.files import write_secret
from mpc.paillier import PaillierKeyPair

log = logging.getLogger(__name__)


def load_or_create_keypair(path: Path, bits: int) -> PaillierKeyPair:
    """Load the key pair, or generate one of ``bits`` (≥ 2048, else KeyTooShortError)."""
    if path.exists():
        keypair = PaillierKeyPair.import_private(path.read_bytes())
        if keypair.public.bits < bits:
            log.warning("existing Paillier key has %d bits (< %d configured)",
                        keypair.public.bits, bits)
        return keypair
    keypair = PaillierKeyPair.generate(bits)
    write_secret(path, keypair.export_private())
    log.info("generated a %d-bit Paillier key pair at %s", bits, path)
    return keypair
