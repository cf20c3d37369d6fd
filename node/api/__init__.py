"""The lender REST API of a node (FastAPI)."""
