"""A member's side of federated training: its table, its bins, the guest and host roles."""
