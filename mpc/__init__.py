"""Cryptography for the federated credit network: pure, I/O-free, secure by default.

Callers use the recipes (:mod:`mpc.secure_sum`, :mod:`mpc.pseudonym`, :mod:`mpc.signing`);
the Paillier primitives in :mod:`mpc.paillier` sit below them and are imported only by recipes
and key management.
"""
