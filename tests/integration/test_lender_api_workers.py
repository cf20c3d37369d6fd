"""The lender API's HTTP frame around evaluations (real uvicorn on port 0, real HTTP).

An evaluation blocks a thread for its whole route, so the route hands it to the node's API
thread pool (``FEDCREDIT_NODE_API_WORKERS``) and the event loop stays free. The evaluation
service here holds every call until the test releases it and then fails the way an
unreachable coordinator does: what is under test is the frame, not the evaluation (the real
one is in test_evaluation_api.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

import httpx
import pytest

from fedcredit.demo.population import Population
from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.http_server import HttpServer
from node.api.app import create_app
from node.api.deps import ApiContext, HealthProbe
from node.api.metrics import ApiMetrics
from node.api_keys import ApiKeyStore, ApiScope
from node.evaluation import EvaluationRequest, EvaluationService
from node.portfolio import PortfolioService
from tests.support.alliance import body

pytestmark = pytest.mark.integration


class HeldEvaluations:
    """Each call waits for ``release``, then raises COORDINATOR_UNAVAILABLE."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.inside = 0
        self.most_inside = 0
        self.requests: list[EvaluationRequest] = []

    def evaluate(self, request: EvaluationRequest) -> None:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.requests.append(request)
        try:
            assert self.release.wait(20), "the test never released the evaluation"
        finally:
            with self._lock:
                self.inside -= 1
        raise FedCreditError("the coordinator is down", code=ErrorCode.COORDINATOR_UNAVAILABLE)

    def wait_inside(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while self.inside < count:
            assert time.monotonic() < deadline, f"{self.inside} of {count} evaluations started"
            time.sleep(0.01)


def serve(tmp_path: Path, workers: int) -> Iterator[tuple[str, str, HeldEvaluations]]:
    held = HeldEvaluations()
    keys = ApiKeyStore(tmp_path / "api-keys.sqlite3")
    _, token = keys.create("origination", [ApiScope.EVALUATIONS_CREATE])
    pool = ThreadPoolExecutor(workers, thread_name_prefix="lender-api")
    context = ApiContext(
        evaluations=cast(EvaluationService, held),
        portfolios=cast(PortfolioService, None),  # not called here
        api_keys=keys,
        metrics=ApiMetrics(),
        health=HealthProbe(member_id="bank", registered=lambda: True, subjects=lambda: 0),
        blocking=pool,
    )
    server = HttpServer(create_app(context, 64 * 1024), "127.0.0.1", 0, "lender API")
    port = server.start_in_thread()
    try:
        yield f"http://127.0.0.1:{port}", token, held
    finally:
        held.release.set()
        server.stop()
        pool.shutdown()
        keys.close()


@pytest.fixture
def four_workers(tmp_path: Path) -> Iterator[tuple[str, str, HeldEvaluations]]:
    yield from serve(tmp_path, 4)


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[tuple[str, str, HeldEvaluations]]:
    yield from serve(tmp_path, 1)


def post(url: str, token: str, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{url}/v1/evaluations", json=payload, headers={"X-API-Key": token},
                      timeout=30)


def test_evaluations_run_beside_each_other_and_the_event_loop_stays_free(
    four_workers: tuple[str, str, HeldEvaluations], population: Population
) -> None:
    url, token, held = four_workers
    with ThreadPoolExecutor(2) as clients:
        pending: list[Future[httpx.Response]] = [
            clients.submit(post, url, token, body(population, i)) for i in range(2)]
        held.wait_inside(2)  # both evaluations are running at once
        started = time.monotonic()
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["member_id"] == "bank"
        assert time.monotonic() - started < 2  # answered while both evaluations block
        # A refused key is answered meanwhile too: the key check does not wait for them.
        refused = post(url, "fck_unknown_key", body(population, 3))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNKNOWN_API_KEY"
        held.release.set()
        responses = [f.result(timeout=20) for f in pending]
    for response in responses:  # the evaluation's typed error crosses the hand-off intact
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "COORDINATOR_UNAVAILABLE"
    assert sorted(r.identifier for r in held.requests) == sorted(
        population.identifiers[i] for i in range(2))


def test_the_worker_count_bounds_evaluations_in_flight(
    one_worker: tuple[str, str, HeldEvaluations], population: Population
) -> None:
    url, token, held = one_worker
    with ThreadPoolExecutor(2) as clients:
        pending = [clients.submit(post, url, token, body(population, i)) for i in range(2)]
        held.wait_inside(1)
        time.sleep(0.3)
        assert held.inside == 1  # the second request waits for the one thread
        held.release.set()
        assert [f.result(timeout=20).status_code for f in pending] == [503, 503]
    assert held.most_inside == 1 and len(held.requests) == 2
