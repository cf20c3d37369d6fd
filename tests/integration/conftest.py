from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fedcredit.demo.population import Population, generate
from mpc.pseudonym import SubjectKey
from tests.support.alliance import API_KEY, InProcessAlliance, start_alliance
from tests.support.spark import spark  # noqa: F401  (a session fixture)


@pytest.fixture(scope="session")
def population() -> Population:
    return generate(subjects=400, nodes=4, seed=11)


@pytest.fixture(scope="module")
def alliance(
    tmp_path_factory: pytest.TempPathFactory, population: Population, subject_key: SubjectKey
) -> Iterator[InProcessAlliance]:
    running = start_alliance(tmp_path_factory.mktemp("alliance"), population, subject_key)
    yield running
    running.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, headers={"X-API-Key": API_KEY}) as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
