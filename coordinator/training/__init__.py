"""The alliance's side of federated training: the arbiter that holds the training key."""
