"""The node's API key store: hashed at rest, scoped, rotatable with a grace period, no oracle.

The store is one local SQLite file (``tmp_path``); every time is an injected clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedcredit.error_catalog import http_status
from fedcredit.errors import (
    AuthenticationError,
    ConflictError,
    ErrorCode,
    InvalidRequestError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from node.api_keys import (
    LAST_USED_RESOLUTION_MS,
    SECRET_BYTES,
    UNKNOWN_KEY_DETAIL,
    ApiKeyStore,
    ApiScope,
)

pytestmark = pytest.mark.unit
T0 = 1_800_000_000_000
CREATE, READ, INQUIRIES = (ApiScope.EVALUATIONS_CREATE, ApiScope.EVALUATIONS_READ,
                           ApiScope.INQUIRIES_READ)
LEGACY_KEY = "Zx8-legacy-lender-key-41c9f2"


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "api-keys.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[ApiKeyStore]:
    keys = ApiKeyStore(db_path, clock)
    yield keys
    keys.close()


def on_disk(db_path: Path) -> bytes:
    """Everything SQLite wrote: the database and its write-ahead log."""
    files = [db_path, db_path.with_name(db_path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


def rejected(store: ApiKeyStore, token: str, now: int = T0,
             scope: ApiScope = CREATE) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        store.authenticate(token, scope, now)
    return caught.value


# -- issuing and storing ---------------------------------------------------------------------
def test_a_created_key_authenticates_for_its_scopes(store: ApiKeyStore) -> None:
    record, token = store.create("loan-origination", [CREATE, READ])
    prefix, key_id, secret = token.split("_", 2)
    assert (prefix, key_id) == ("fck", record.key_id)
    assert len(base64.urlsafe_b64decode(secret + "=")) == SECRET_BYTES
    assert record.name == "loan-origination" and record.scopes == {CREATE, READ}
    assert record.created_ms == T0 and record.expires_ms is None and not record.imported
    assert store.authenticate(token, CREATE, T0).key_id == record.key_id
    assert store.authenticate(token, READ, T0).key_id == record.key_id
    assert store.list() == [store.get(record.key_id)]


def test_only_a_hash_of_the_key_is_stored(store: ApiKeyStore, db_path: Path) -> None:
    _, token = store.create("loan-origination", [CREATE])
    secret = secret_of(token)
    raw_secret = base64.urlsafe_b64decode(secret + "=")
    digest = hashlib.sha256(token.encode()).digest()
    for state in ("open", "closed"):  # in the WAL while open, checkpointed once closed
        if state == "closed":
            store.close()
        stored = on_disk(db_path)
        assert digest in stored, "positive control: the key's SHA-256 is what is kept"
        assert secret.encode() not in stored
        assert raw_secret not in stored
        assert secret[:16].encode() not in stored


def test_the_database_is_private_to_its_owner(store: ApiKeyStore, db_path: Path) -> None:
    store.create("loan-origination", [CREATE])
    for path in (db_path, db_path.with_name(db_path.name + "-wal"),
                 db_path.with_name(db_path.name + "-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_world_readable_file_is_made_private(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o644)
    db_path.chmod(0o644)
    ApiKeyStore(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_keys_survive_a_restart(db_path: Path, clock: FakeClock) -> None:
    first = ApiKeyStore(db_path, clock)
    record, token = first.create("loan-origination", [READ])
    first.close()
    again = ApiKeyStore(db_path, clock)
    try:
        assert again.authenticate(token, READ, T0).key_id == record.key_id
    finally:
        again.close()


@pytest.mark.parametrize("name", ["", " leading-space", "x" * 65, "semi;colon", "new\nline"])
def test_bad_names_are_refused(store: ApiKeyStore, name: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.create(name, [CREATE])


@pytest.mark.parametrize("scopes", [[], ["evaluations:write"], ["admin"]])
def test_unknown_or_no_scopes_are_refused(store: ApiKeyStore, scopes: list[str]) -> None:
    with pytest.raises(InvalidRequestError):
        store.create("app", scopes)
    assert store.list() == []


def test_names_are_unique_among_active_keys(store: ApiKeyStore) -> None:
    record, _ = store.create("app", [CREATE])
    with pytest.raises(ConflictError):
        store.create("app", [READ])
    store.revoke(record.key_id)
    replacement, token = store.create("app", [READ])
    assert store.authenticate(token, READ, T0).key_id == replacement.key_id


# -- scopes ------------------------------------------------------------------------------------
def test_a_key_without_the_scope_is_denied_not_unknown(store: ApiKeyStore) -> None:
    _, token = store.create("reporting", [READ])
    with pytest.raises(PermissionDeniedError) as caught:
        store.authenticate(token, CREATE, T0)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert http_status(caught.value) == 403
    assert "evaluations:create" in caught.value.detail
    with pytest.raises(PermissionDeniedError):
        store.authenticate(token, INQUIRIES, T0)


# -- failures are one opaque error ---------------------------------------------------------------
@pytest.mark.parametrize("token", [
    "",
    "fck_",
    "fck__",
    "fck_0123456789abcdef",
    "fck_0123456789abcdef_",
    "fck_NOT-HEX-0000000_secret",
    "FCK_0123456789abcdef_secret",
    "Bearer fck_0123456789abcdef_secret",
    "x" * 10_000,
    "not a key at all",
    "fck_0123456789abcdef_" + "A" * 43,  # well formed, unknown id
])
def test_malformed_and_unknown_keys_are_unknown(store: ApiKeyStore, token: str) -> None:
    store.create("app", [CREATE])
    error = rejected(store, token)
    assert error.code is ErrorCode.UNKNOWN_API_KEY and http_status(error) == 401
    assert error.detail == UNKNOWN_KEY_DETAIL


def test_every_failure_reads_the_same(store: ApiKeyStore, clock: FakeClock) -> None:
    """Unknown, wrong secret, revoked, expired, rotated away: one message, one code."""
    good, good_token = store.create("good", [CREATE])
    revoked, revoked_token = store.create("revoked", [CREATE])
    store.revoke(revoked.key_id)
    _, expiring_token = store.create("expiring", [CREATE], expires_ms=T0 + 1000)
    rotated, old_token = store.create("rotated", [CREATE])
    store.rotate(rotated.key_id)
    wrong_secret = f"fck_{good.key_id}_{'A' * 43}"
    flipped = good_token[:-1] + ("A" if good_token[-1] != "A" else "B")
    unknown_id = f"fck_{'0' * 16}_{secret_of(good_token)}"
    errors = [rejected(store, t, T0 + 1000) for t in
              (revoked_token, expiring_token, old_token, wrong_secret, flipped, unknown_id)]
    assert {(e.code, e.detail, str(e)) for e in errors} == {
        (ErrorCode.UNKNOWN_API_KEY, UNKNOWN_KEY_DETAIL, UNKNOWN_KEY_DETAIL)}
    assert store.authenticate(good_token, CREATE, T0 + 1000).key_id == good.key_id


def test_digests_are_compared_in_constant_time(
    store: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, token = store.create("app", [CREATE])
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for presented in (token, f"fck_{record.key_id}_{'A' * 43}", f"fck_{'0' * 16}_x", "junk"):
        calls.clear()
        try:
            store.authenticate(presented, CREATE, T0)
        except AuthenticationError:
            pass
        # current and previous secret, always both: the path does not depend on the outcome
        assert len(calls) == 2, presented
        assert all(len(a) == len(b) == 32 for a, b in calls)
    # The decision is the comparison's: if it says no, the right key is refused too.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    rejected(store, token)


# -- expiry ----------------------------------------------------------------------------------
def test_a_key_stops_working_when_it_expires(store: ApiKeyStore) -> None:
    _, token = store.create("app", [CREATE], expires_ms=T0 + 60_000)
    assert store.authenticate(token, CREATE, T0 + 59_999)
    rejected(store, token, T0 + 60_000)
    rejected(store, token, T0 + 10**9)


def test_an_expiry_in_the_past_is_refused(store: ApiKeyStore) -> None:
    with pytest.raises(InvalidRequestError):
        store.create("app", [CREATE], expires_ms=T0)


# -- rotation --------------------------------------------------------------------------------
def test_rotation_without_grace_ends_the_old_secret_at_once(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    record, old = store.create("app", [CREATE, READ])
    clock.now = T0 + 5000
    new = store.rotate(record.key_id)
    assert new != old and new.startswith(f"fck_{record.key_id}_")
    rejected(store, old, T0 + 5000)
    rotated = store.authenticate(new, READ, T0 + 5000)
    assert (rotated.key_id, rotated.name, rotated.scopes) == (record.key_id, record.name,
                                                              record.scopes)
    assert rotated.rotated_ms == T0 + 5000 and rotated.previous_until_ms is None


def test_rotation_with_grace_keeps_the_old_secret_until_it_ends(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    record, old = store.create("app", [CREATE])
    new = store.rotate(record.key_id, grace_ms=300_000)
    assert store.get(record.key_id).previous_until_ms == T0 + 300_000
    for now in (T0, T0 + 299_999):
        assert store.authenticate(old, CREATE, now).key_id == record.key_id
        assert store.authenticate(new, CREATE, now).key_id == record.key_id
    rejected(store, old, T0 + 300_000)
    assert store.authenticate(new, CREATE, T0 + 300_000)


def test_rotating_again_ends_the_previous_grace(store: ApiKeyStore, clock: FakeClock) -> None:
    record, first = store.create("app", [CREATE])
    second = store.rotate(record.key_id, grace_ms=300_000)
    clock.now = T0 + 1000
    third = store.rotate(record.key_id, grace_ms=300_000)
    rejected(store, first, T0 + 1000)
    assert store.authenticate(second, CREATE, T0 + 1000)
    assert store.authenticate(third, CREATE, T0 + 1000)


def test_the_grace_period_is_bounded(store: ApiKeyStore) -> None:
    record, _ = store.create("app", [CREATE])
    for grace in (-1, 8 * 86_400_000):
        with pytest.raises(InvalidRequestError):
            store.rotate(record.key_id, grace_ms=grace)


def test_unknown_revoked_and_expired_keys_are_not_rotated(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    with pytest.raises(ResourceNotFoundError):
        store.rotate("0" * 16)
    revoked, _ = store.create("revoked", [CREATE])
    store.revoke(revoked.key_id)
    expiring, _ = store.create("expiring", [CREATE], expires_ms=T0 + 1)
    clock.now = T0 + 1
    for key_id in (revoked.key_id, expiring.key_id):
        with pytest.raises(ConflictError):
            store.rotate(key_id)


# -- revocation ------------------------------------------------------------------------------
def test_revocation_is_final_and_ends_a_grace_period(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    record, old = store.create("app", [CREATE])
    new = store.rotate(record.key_id, grace_ms=300_000)
    clock.now = T0 + 10
    revoked = store.revoke(record.key_id)
    assert revoked.revoked_ms == T0 + 10 and revoked.previous_until_ms is None
    rejected(store, old, T0 + 10)
    rejected(store, new, T0 + 10)
    with pytest.raises(ConflictError):
        store.revoke(record.key_id)
    with pytest.raises(ResourceNotFoundError):
        store.revoke("f" * 16)


def test_revocation_from_another_process_applies_to_the_next_request(
    store: ApiKeyStore, db_path: Path
) -> None:
    record, token = store.create("app", [CREATE])
    assert store.authenticate(token, CREATE, T0)
    operator = ApiKeyStore(db_path)  # what `fedcredit node api-keys revoke` opens
    try:
        operator.revoke(record.key_id)
    finally:
        operator.close()
    rejected(store, token)


# -- last use --------------------------------------------------------------------------------
def test_last_use_is_written_at_most_once_a_minute(store: ApiKeyStore, db_path: Path) -> None:
    record, token = store.create("app", [CREATE])
    assert store.get(record.key_id).last_used_ms is None
    watcher = sqlite3.connect(db_path)  # its data_version changes when another connection commits

    def version() -> int:
        value: int = watcher.execute("PRAGMA data_version").fetchone()[0]
        return value

    try:
        before = version()
        assert store.authenticate(token, CREATE, T0).last_used_ms == T0
        assert version() != before, "the first use is recorded"
        quiet = version()
        for offset in (1, 1000, LAST_USED_RESOLUTION_MS - 1):
            assert store.authenticate(token, CREATE, T0 + offset).last_used_ms == T0
        assert version() == quiet, "no write per request"
        later = T0 + LAST_USED_RESOLUTION_MS
        assert store.authenticate(token, CREATE, later).last_used_ms == later
        assert store.get(record.key_id).last_used_ms == later
    finally:
        watcher.close()


# -- keys from FEDCREDIT_NODE_API_KEYS -----------------------------------------------------------
def test_an_imported_key_keeps_working_and_is_stored_hashed(
    store: ApiKeyStore, db_path: Path
) -> None:
    record = store.import_plaintext("legacy-app", LEGACY_KEY, [CREATE, READ])
    assert record.imported and record.scopes == {CREATE, READ}
    assert store.authenticate(LEGACY_KEY, CREATE, T0).key_id == record.key_id
    with pytest.raises(PermissionDeniedError):
        store.authenticate(LEGACY_KEY, INQUIRIES, T0)
    stored = on_disk(db_path)
    assert hashlib.sha256(LEGACY_KEY.encode()).digest() in stored
    assert LEGACY_KEY.encode() not in stored
    rejected(store, LEGACY_KEY[:-1])
    rejected(store, LEGACY_KEY + "x")


def test_an_imported_key_rotates_to_an_issued_one(store: ApiKeyStore) -> None:
    record = store.import_plaintext("legacy-app", LEGACY_KEY, [CREATE])
    new = store.rotate(record.key_id, grace_ms=60_000)
    assert new.startswith(f"fck_{record.key_id}_") and not store.get(record.key_id).imported
    assert store.authenticate(LEGACY_KEY, CREATE, T0 + 59_999).key_id == record.key_id
    rejected(store, LEGACY_KEY, T0 + 60_000)
    assert store.authenticate(new, CREATE, T0 + 60_000).key_id == record.key_id


@pytest.mark.parametrize("token", [
    "short-key", "changeme", "my-key-override-me-please", "has space in it 123456",
    "fck_0123456789abcdef_abcdefghijklmnopqrstuvwxyz", "x" * 300, "",
])
def test_weak_or_ambiguous_keys_are_not_imported(store: ApiKeyStore, token: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.import_plaintext("legacy-app", token, [CREATE])
    assert store.list() == []


def test_a_key_is_imported_once(store: ApiKeyStore) -> None:
    store.import_plaintext("legacy-app", LEGACY_KEY, [CREATE])
    with pytest.raises(ConflictError):
        store.import_plaintext("other-app", LEGACY_KEY, [READ])
