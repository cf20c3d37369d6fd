"""The alliance control plane: member registry, route planning, plan signing."""
