"""Print the error-code table of docs/security.md from the one catalog (a test keeps them equal)."""

from __future__ import annotations

from fedcredit.error_catalog import CATALOG


def render() -> str:
    lines = ["| code | HTTP | gRPC | meaning |", "|---|---|---|---|"]
    for code, entry in CATALOG.items():
        lines.append(
            f"| `{code.value}` | {entry.http_status} | {entry.grpc_status.name} | {entry.message} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
