"""The node's data plane: raw institution tables → validated, pseudonymized feature snapshots."""
