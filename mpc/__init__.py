"""Cryptography for the federated credit network: pure, I/O-free, secure by default.

Callers use the recipes (:mod:`mpc.secure_sum`, :mod:`mpc.pseudonym`, :mod:`mpc.signing`).
:mod:`mpc.paillier` provides the key types everyone passes around (a public key, a key pair)
and, below them, the raw operations (``raw_encrypt``, ``add``, ``rerandomize``,
``raw_decrypt``) that only the recipes call.
"""
