from __future__ import annotations

import pytest

from mpc.paillier import PaillierKeyPair
from mpc.pseudonym import SubjectKey

#: Session fixtures shared by every test directory (a real PostgreSQL server: postgres_url).
pytest_plugins = ["tests.support.postgres"]


@pytest.fixture(scope="session")
def keypair() -> PaillierKeyPair:
    return PaillierKeyPair.generate(2048)


@pytest.fixture(scope="session")
def other_keypair() -> PaillierKeyPair:
    return PaillierKeyPair.generate(2048)


@pytest.fixture(scope="session")
def subject_key() -> SubjectKey:
    return SubjectKey(bytes(range(32)))
