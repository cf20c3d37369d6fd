"""One member institution: feature store, Node gRPC service, lender REST API."""
