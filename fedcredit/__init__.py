"""Shared plumbing for the federated credit network: errors, transport, CLI, launcher.

The architecture lives in the sibling packages: ``proto`` (wire contract), ``mpc`` (crypto),
``scoring`` (credit decisions), ``node`` (an institution) and ``coordinator`` (control plane).
"""

__version__ = "0.1.0"
