"""Portfolio re-scoring, the requester's side: a job over thousands to millions of subjects.

``start`` checks the request here (identifiers, consent, model) and answers at once with a
queued job; a worker thread then

1. keeps the distinct subjects this member holds a record of (the consent attests an existing
   customer relationship, which this member can only sign for its own customers; the others
   are reported ``not_a_customer`` and never leave the node), in chunks of 4,096;
2. generates a fresh TenSEAL key pair for the job and asks the coordinator for a batch plan
   committing to the subject and chunk counts and to the public key's digest;
3. signs the consent over the Merkle root of the chunks and records it in the ledger (durably,
   before anything is routed), then opens the job at every hop;
4. walks the chunks down the CHAIN, a few in flight (``chunks_in_flight``), decrypts each
   chunk's sum, adds this member's own shares in the clear and scores every subject;
5. writes ``results.parquet`` (row order of the request) and records the completion.

Progress is saved after every chunk; ``cancel`` stops before the next chunk. A node restart
fails the jobs it interrupted (JOB_INTERRUPTED): their secret keys died with the process.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.consents import consent_for, consent_ledger_body, sign_consent
from fedcredit.errors import (
    ConflictError,
    ConsentError,
    CoverageError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
)
from fedcredit.protocol import (
    BatchTerms,
    ConsentTerms,
    HopOutcome,
    Plan,
    Purpose,
    Relationship,
    SignedConsent,
)
from fedcredit.tls import IdentityHolder
from mpc.batch_he import CHUNK_SUBJECTS, BatchKeyPair, BatchShare, decrypt
from mpc.contribution import EXPOSURE_FIELDS
from mpc.merkle import inclusion_proofs, root_from_leaves
from mpc.pseudonym import IdentifierType, SubjectKey, ledger_subject_tag, pseudonymize_many
from node.audit_trail import AuditTrail
from node.batch_share import batch_share
from node.blacklist import SubjectFlags
from node.contribution import ContributionService
from node.coordinator_client import CoordinatorClient
from node.models import ModelCatalog
from node.portfolio_hop import chunk_leaf
from node.portfolio_jobs import (
    PSEUDONYMS_FILE,
    RESULTS_CSV,
    RESULTS_PARQUET,
    JobRecord,
    JobState,
    JobStore,
)
from node.route import RouteForwarder
from node.store import FeatureStore
from scoring.assessment import assess_many

log = logging.getLogger(__name__)

PSEUDONYM_BYTES = 32
#: Jobs one node runs at once (a million subjects take about 1 GB at the requester).
MAX_RUNNING_JOBS = 2
#: Result columns after ``row``, ``subject_pseudonym`` and ``status``.
EXPOSURE_COLUMNS_OUT = {
    "outstanding_debt_cents": "outstanding_debt_cents",
    "active_loans": "active_loans",
    "open_credit_lines": "open_credit_lines",
    "accounts_30dpd": "accounts_30dpd",
    "accounts_90dpd": "accounts_90dpd",
    "inquiries_90d": "inquiries_90d",
    "has_record": "institutions_with_records",
    "flagged": "blacklist_flags",
    "with_active_loans": "institutions_with_active_loans",
}


@dataclass(frozen=True)
class PortfolioRequest:
    id_type: IdentifierType
    identifiers: Sequence[str]
    consent: ConsentTerms


@dataclass
class _Subjects:
    """The request's rows mapped onto its distinct subjects."""

    unique: npt.NDArray[Any]  # (U,) void32 pseudonyms, the job's subjects in chunk order
    inverse: npt.NDArray[np.int64]  # (rows,) index into unique
    customers: npt.NDArray[np.bool_]  # (U,) this member holds a record


@dataclass
class _Totals:
    """Per distinct subject: the joint result, filled chunk by chunk."""

    logits: npt.NDArray[np.float64]
    probabilities: npt.NDArray[np.float64]
    scores: npt.NDArray[np.int64]
    grades: npt.NDArray[np.str_]
    exposures: npt.NDArray[np.int64]
    answered: npt.NDArray[np.int64]

    @classmethod
    def empty(cls, n: int) -> _Totals:
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int64),
                   np.full(n, "", dtype="<U1"), np.zeros((n, len(EXPOSURE_FIELDS)), np.int64),
                   np.zeros(n, np.int64))


class _Steps:
    """Seconds per step of a job, for its summary (where the time goes)."""

    def __init__(self, started: float) -> None:
        self._last = self._started = started
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> dict[str, float]:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self.seconds["worker_seconds"] = round(now - self._started, 3)
        self._last = now
        return self.seconds


class PortfolioService:
    def __init__(
        self,
        member_id: str,
        subject_key: SubjectKey,
        identity: IdentityHolder,
        contributions: ContributionService,
        audit: AuditTrail,
        coordinator: CoordinatorClient,
        forwarder: RouteForwarder,
        store: FeatureStore,
        models: ModelCatalog,
        flags: SubjectFlags,
        jobs: JobStore,
        model_version: str,
        allowed_purposes: frozenset[Purpose],
        clock: Clock,
        max_subjects: int,
        chunks_in_flight: int,
        chunk_subjects: int = CHUNK_SUBJECTS,
    ) -> None:
        self._member_id = member_id
        self._subject_key = subject_key
        self._identity = identity
        self._contributions = contributions
        self._audit = audit
        self._coordinator = coordinator
        self._forwarder = forwarder
        self._store = store
        self._models = models
        self._flags = flags
        self._jobs = jobs
        self._model_version = model_version
        self._allowed = allowed_purposes
        self._clock = clock
        self._max_subjects = max_subjects
        self._in_flight = chunks_in_flight
        self._chunk_subjects = chunk_subjects
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        for record in jobs.interrupted(clock()):
            log.warning("portfolio job %s was interrupted by a restart", record.job_id)

    # -- the API's operations -------------------------------------------------------------
    def start(self, request: PortfolioRequest) -> JobRecord:
        """Check the request and queue the job; everything else happens in the background."""
        rows = len(request.identifiers)
        if not 0 < rows <= self._max_subjects:
            raise InvalidRequestError(f"a portfolio holds 1 to {self._max_subjects} subjects, "
                                      f"not {rows}")
        terms = request.consent
        terms.check(self._clock(), self._allowed)
        if terms.relationship is not Relationship.EXISTING_CUSTOMER:
            raise ConsentError("a portfolio is re-scored for existing customers only: the "
                               "consent must attest relationship existing_customer",
                               code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        if self._model_version:
            self._models.requester_slice(self._model_version)
        pseudonyms = np.frombuffer(
            pseudonymize_many(self._subject_key, request.id_type, request.identifiers),
            dtype=np.dtype((np.void, PSEUDONYM_BYTES)))
        unique, inverse = np.unique(pseudonyms, return_inverse=True)
        now = self._clock()
        record = JobRecord(
            job_id=str(uuid.uuid4()), state=JobState.QUEUED, created_ms=now, updated_ms=now,
            rows=rows, subjects=len(unique), chunks=0, chunks_done=0,
            purpose=terms.purpose.value, model_version=self._model_version)
        cancel = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(record, terms, unique, inverse.astype(np.int64).ravel(),
                                    cancel),
            name=f"portfolio-{record.job_id[:8]}", daemon=True)
        with self._lock:
            if len(self._threads) >= MAX_RUNNING_JOBS:
                raise ConflictError(f"{MAX_RUNNING_JOBS} portfolio jobs are running at this "
                                    "node; start this one when one has ended")
            self._jobs.create(record)
            self._cancel[record.job_id] = cancel
            self._threads[record.job_id] = thread
        thread.start()
        return record

    def get(self, job_id: str) -> JobRecord:
        return self._jobs.get(job_id)

    def recent(self, limit: int = 100) -> list[JobRecord]:
        return self._jobs.recent(limit)

    def cancel(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record.state.finished:
            raise ConflictError(f"the job has ended ({record.state.value}): nothing to cancel")
        with self._lock:
            event = self._cancel.get(job_id)
        if event is not None:
            event.set()
        return self._jobs.get(job_id)

    def results(self, job_id: str, fmt: str) -> str:
        """The path of the job's results file in ``parquet`` or ``csv``."""
        record = self._jobs.get(job_id)
        if record.state is not JobState.SUCCEEDED:
            raise ConflictError(
                f"the job is {record.state.value}: results exist once it has succeeded")
        directory = self._jobs.directory(job_id)
        parquet = directory / RESULTS_PARQUET
        if fmt == "parquet":
            return str(parquet)
        csv = directory / RESULTS_CSV
        if not csv.exists():  # concurrent first downloads each write their own, then swap in
            partial = csv.with_suffix(f".{uuid.uuid4().hex}.partial")
            pa_csv.write_csv(pq.read_table(parquet), partial)
            partial.replace(csv)
        return str(csv)

    def close(self) -> None:
        """Cancel running jobs and wait briefly for their workers (they end FAILED/CANCELLED)."""
        with self._lock:
            events = list(self._cancel.values())
            threads = list(self._threads.values())
        for event in events:
            event.set()
        for thread in threads:
            thread.join(timeout=10)

    # -- the worker -------------------------------------------------------------------------
    def _run(self, record: JobRecord, terms: ConsentTerms, unique: npt.NDArray[Any],
             inverse: npt.NDArray[np.int64], cancel: threading.Event) -> None:
        started = time.perf_counter()
        record = self._save(record, state=JobState.RUNNING)
        try:
            record = self._execute(record, terms, unique, inverse, cancel, started)
        except FedCreditError as exc:
            # From the stored record: it holds the progress (plan, chunks done) made so far.
            record = self._save(self._jobs.get(record.job_id), state=JobState.FAILED,
                                error_code=exc.code, error_detail=exc.detail)
            log.warning("portfolio job %s failed: %s", record.job_id, exc)
        except Exception as exc:  # the job must end in a state, whatever broke
            log.exception("portfolio job %s failed", record.job_id)
            record = self._save(self._jobs.get(record.job_id), state=JobState.FAILED,
                                error_code=ErrorCode.INTERNAL,
                                error_detail=f"internal error ({type(exc).__name__})")
        finally:
            with self._lock:
                self._cancel.pop(record.job_id, None)
                self._threads.pop(record.job_id, None)

    def _execute(self, record: JobRecord, terms: ConsentTerms, unique: npt.NDArray[Any],
                 inverse: npt.NDArray[np.int64], cancel: threading.Event,
                 started: float) -> JobRecord:
        steps = _Steps(started)
        # 1. Only subjects this member knows: it attests the relationship for each of them.
        # Their records are read once, here; this member's own shares come from them below.
        keys = [bytes(p) for p in unique]
        names_of = [keys[i:i + CHUNK_SUBJECTS] for i in range(0, len(keys), CHUNK_SUBJECTS)]
        blocks = [(names, self._store.lookup_many(names)) for names in names_of]
        customers = np.concatenate([found.found for _, found in blocks])
        subjects = _Subjects(unique, inverse, customers)
        job_keys = [k for k, known in zip(keys, customers, strict=True) if known]
        if not job_keys:
            raise ConsentError("none of these subjects is a customer of this member",
                               code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        size = self._chunk_subjects
        chunks = [b"".join(job_keys[i:i + size]) for i in range(0, len(job_keys), size)]
        (self._jobs.directory(record.job_id) / PSEUDONYMS_FILE).write_bytes(b"".join(chunks))
        leaves = [chunk_leaf(i, c) for i, c in enumerate(chunks)]
        root, proofs = root_from_leaves(leaves), inclusion_proofs(leaves)
        record = self._save(record, chunks=len(chunks), summary={
            "not_a_customer": int(np.count_nonzero(~customers))})
        steps.mark("lookup_seconds")

        # 2.-3. Key, plan, consent (in the ledger first), open the job at every hop.
        keypair = BatchKeyPair.generate()
        batch = BatchTerms(subjects=len(job_keys), chunks=len(chunks),
                           key_sha256=keypair.public.sha256, chunk_subjects=size)
        signed = self._coordinator.plan(self._model_version, terms.purpose, batch=batch)
        plan = self._contributions.verified_plan(signed, self._clock())
        if plan.requester_id != self._member_id or plan.batch != batch or (
            self._model_version and plan.model_version != self._model_version
        ) or plan.purpose is not terms.purpose:
            raise FedCreditError("the plan does not match the job", code=ErrorCode.PLAN_INVALID)
        model = self._models.requester_slice(plan.model_version)
        steps.mark("key_and_plan_seconds")
        now = self._clock()
        own_partials = np.zeros(len(keys))
        own_exposures = np.zeros((len(keys), len(EXPOSURE_FIELDS)), dtype=np.int64)
        for start, (names, found) in zip(range(0, len(keys), CHUNK_SUBJECTS), blocks,
                                         strict=True):
            own, _ = batch_share(names, found, model, self._flags.flagged_among(names, now))
            own_partials[start:start + len(names)] = own.partials
            own_exposures[start:start + len(names)] = own.exposures
        del blocks
        steps.mark("own_shares_seconds")
        consent = self._consent(terms, plan, root, batch)
        record = self._save(record, query_id=plan.query_id, model_version=plan.model_version)
        opened = self._forwarder.open_portfolio(plan, signed, consent, keypair.public.wire)
        steps.mark("consent_and_open_seconds")

        # 4. The chunks, a few in flight; results land in place by subject index.
        totals = _Totals.empty(len(unique))
        index_of_job = np.flatnonzero(customers)
        worst = len(plan.route)
        skipped = dict(opened)
        done = 0

        def one(i: int) -> tuple[int, tuple[HopOutcome, ...]]:
            if cancel.is_set():
                return i, ()
            at = index_of_job[i * size:(i + 1) * size]
            accumulator, outcomes = self._forwarder.forward_chunk(
                plan, signed, keypair.public, i, chunks[i], proofs[i], 0, None,
                plan.expires_unix_ms)
            answered = sum(1 for o in outcomes if o.answered)
            if accumulator is None or answered < plan.fallback.min_answered:
                raise CoverageError(f"chunk {i}: {answered} member(s) answered; policy requires "
                                    f"{plan.fallback.min_answered}")
            total = decrypt(keypair, accumulator) + BatchShare(own_partials[at],
                                                               own_exposures[at])
            scored = assess_many(total.partials, model.intercept, model.scale)
            totals.logits[at] = scored.logits
            totals.probabilities[at] = scored.default_probabilities
            totals.scores[at] = scored.scores
            totals.grades[at] = scored.grades
            totals.exposures[at] = total.exposures
            totals.answered[at] = answered
            return i, outcomes

        with ThreadPoolExecutor(self._in_flight, thread_name_prefix="portfolio-chunk") as pool:
            try:
                for _, outcomes in pool.map(one, range(len(chunks))):
                    if cancel.is_set():
                        break
                    done += 1
                    answered = sum(1 for o in outcomes if o.answered)
                    worst = min(worst, answered)
                    for o in outcomes:
                        if not o.answered:
                            skipped.setdefault(o.member_id, o.error_code)
                    record = self._save(record, chunks_done=done)
            except BaseException:
                cancel.set()  # a failed chunk fails the job: the queued chunks stay home
                raise
        if cancel.is_set():
            return self._save(record, state=JobState.CANCELLED, error_detail="cancelled")
        steps.mark("route_seconds")

        # 5. Results in the request's row order, then the completion in the ledger.
        path = self._jobs.directory(record.job_id) / RESULTS_PARQUET
        _write_results(path, subjects, totals)
        digest = hashlib.sha256(path.read_bytes()).digest()
        self._audit.enqueue(EntryDraft(
            kind=EntryKind.COMPLETION, actor=self._member_id, query_id=plan.query_id, body={
                "asked": len(plan.route),
                "answered": worst,
                "skipped": [{"member_id": m, "error_code": c} for m, c in sorted(skipped.items())],
                "result_commitment": self._audit.commitment(plan.query_id.encode() + digest),
                "subjects": batch.subjects,
                "chunks": batch.chunks,
            }))
        return self._save(record, state=JobState.SUCCEEDED, summary={
            **record.summary,
            "members_asked": len(plan.route),
            "members_answered_min": worst,
            "skipped": [{"member_id": m, "error_code": c} for m, c in sorted(skipped.items())],
            **steps.mark("results_seconds"),
        })

    def _consent(self, terms: ConsentTerms, plan: Plan, root: bytes, batch: BatchTerms
                 ) -> SignedConsent:
        record = consent_for(terms, plan, root, self._clock())
        consent = sign_consent(record, self._identity.current.signer)
        self._audit.record(EntryDraft(
            kind=EntryKind.CONSENT, actor=self._member_id, query_id=plan.query_id,
            subject_tag=ledger_subject_tag(self._subject_key, root, plan.query_id),
            body={
                **consent_ledger_body(record, consent),
                "subjects": batch.subjects,
                "chunks": batch.chunks,
                "pseudonym_root": root.hex(),
            }))
        return consent

    def _save(self, record: JobRecord, **changes: Any) -> JobRecord:
        updated = replace(record, updated_ms=self._clock(), **changes)
        self._jobs.save(updated)
        return updated


def _hex_column(data: bytes, rows: int) -> pa.Array:
    """Fixed-width pseudonyms as a column of hex strings, built without a Python loop."""
    width = 2 * PSEUDONYM_BYTES
    offsets = np.arange(0, width * (rows + 1), width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets.tobytes()),
                                            pa.py_buffer(binascii.hexlify(data)))


def _write_results(path: Path, subjects: _Subjects, totals: _Totals) -> None:
    inv = subjects.inverse
    scored = subjects.customers[inv]
    columns: dict[str, Any] = {
        "row": pa.array(np.arange(len(inv), dtype=np.int64)),
        "subject_pseudonym": _hex_column(subjects.unique[inv].tobytes(), len(inv)),
        "status": pa.array(np.where(scored, "scored", "not_a_customer")),
        "score": pa.array(totals.scores[inv], mask=~scored),
        "default_probability": pa.array(totals.probabilities[inv], mask=~scored),
        "grade": pa.array(totals.grades[inv], mask=~scored),
        "joint_logit": pa.array(totals.logits[inv], mask=~scored),
    }
    for j, name in enumerate(EXPOSURE_FIELDS):
        columns[EXPOSURE_COLUMNS_OUT[name]] = pa.array(totals.exposures[inv, j], mask=~scored)
    columns["members_answered"] = pa.array(totals.answered[inv], mask=~scored)
    partial = path.with_suffix(".parquet.partial")
    pq.write_table(pa.table(columns), partial)
    partial.replace(path)
