"""Docs that state facts the code owns are checked against the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_the_error_table_in_security_md_matches_the_catalog() -> None:
    spec = importlib.util.spec_from_file_location("error_table", ROOT / "scripts/error_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() in (ROOT / "docs" / "security.md").read_text()


def test_readme_quickstart_has_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == [
        "bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_operations_md_lists_every_setting() -> None:
    from coordinator.settings import CoordinatorSettings
    from node.ingest.settings import IngestSettings
    from node.settings import NodeSettings

    text = (ROOT / "docs" / "operations.md").read_text()
    for cls, prefix in ((CoordinatorSettings, "FEDCREDIT_COORDINATOR_"),
                        (NodeSettings, "FEDCREDIT_NODE_"),
                        (IngestSettings, "FEDCREDIT_INGEST_")):
        missing = [n for n in cls.model_fields if f"`{prefix}{n.upper()}`" not in text]
        assert missing == [], f"{cls.__name__}: {missing}"
