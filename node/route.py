"""Walking a route: call the next hop (CHAIN) or the children (TREE), skip unreachable ones
per the plan's fallbacks.

CHAIN: the requester starts the walk at hop 0; each node continues it after adding its own
contribution. Whatever the later hops return travels back up the call chain, so the requester
only ever receives the final accumulator.

TREE: the requester calls the root, a member other than itself; every hop calls its children in
parallel, adds what they return (each child's subtree sum, encrypted under the requester's key)
to its own encrypted share and returns the sum to its parent. Only the root answers the
requester, and only with the whole tree's sum.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from fedcredit.clock import Clock
from fedcredit.error_catalog import error_from_rpc
from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.protocol import (
    HopOutcome,
    Plan,
    RouteMode,
    SignedConsent,
    SignedPlan,
    TreePosition,
    describe_skips,
    tree_positions,
)
from fedcredit.tls import IdentityHolder, target_name_option
from fedcredit.transport import create_channel
from mpc.batch_he import BatchCipher, BatchPublicKey
from mpc.batch_he import rerandomize as rerandomize_batch
from mpc.paillier import PaillierPublicKey
from mpc.pki import CertRole
from mpc.secure_sum import EncryptedContribution, add_encrypted, rerandomize
from node.directory import MemberDirectory
from node.serde import (
    OpenPortfolioCall,
    contribute_reply_from_pb,
    contribute_request_to_pb,
    open_portfolio_to_pb,
    portfolio_chunk_to_pb,
    portfolio_reply_from_pb,
)
from proto.v1 import node_pb2_grpc

log = logging.getLogger(__name__)
R = TypeVar("R")

#: A hop that fails is skipped and recorded, whatever its reason: the requester checked the
#: request itself (identifier, consent, plan, key) before routing, so what a hop refuses is that
#: member's own state or policy (down, clock skew, a stale key, a purpose it does not serve),
#: and one member must not fail everyone's evaluations. The exception is a starting hop's
#: refusal to return a sum with too few contributions: retrying further hops cannot help.
NOT_SKIPPABLE = frozenset({ErrorCode.INSUFFICIENT_COVERAGE})
#: Kept back from each call's budget for this hop's own reply.
RETURN_MARGIN_MS = 50


class PeerChannels:
    """One mutual-TLS channel per (member, endpoint), reused across evaluations.

    Each channel accepts only a server whose certificate names that member, so a plan's
    endpoint cannot lead this node to hand an accumulator to anyone else. A renewed identity
    of this node replaces every channel.
    """

    def __init__(self, identity: IdentityHolder) -> None:
        self._identity = identity
        self._generation = identity.generation
        #: Each channel with its stub (a stub is a handful of method objects: made once).
        self._channels: dict[tuple[str, str], tuple[grpc.Channel, node_pb2_grpc.NodeStub]] = {}
        self._lock = threading.Lock()

    def stub(self, member_id: str, endpoint: str) -> node_pb2_grpc.NodeStub:
        with self._lock:
            if self._generation != self._identity.generation:
                # Not closed here: calls in flight on the old channels hold them and must
                # finish; the old channels are left to the garbage collector (a renewal
                # happens every few weeks).
                self._channels.clear()
                self._generation = self._identity.generation
            pair = self._channels.get((member_id, endpoint))
            if pair is None:
                channel = create_channel(endpoint, self._identity.channel_credentials(),
                                         target_name_option(member_id, CertRole.MEMBER))
                pair = self._channels[(member_id, endpoint)] = (channel,
                                                                node_pb2_grpc.NodeStub(channel))
        return pair[1]

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()


@dataclass(frozen=True)
class RouteResult:
    accumulator: EncryptedContribution | None
    outcomes: tuple[HopOutcome, ...]
    key: PaillierPublicKey


#: Threads that call a TREE hop's children (blocking calls: a gRPC future would start a
#: channel-polling thread per child per evaluation, a visible cost in the profile). Started on
#: demand; a call that waits for a thread still ends by its own deadline.
FAN_OUT_THREADS = 128


class RouteForwarder:
    def __init__(self, peers: PeerChannels, directory: MemberDirectory, clock: Clock) -> None:
        self._peers = peers
        self._directory = directory
        self._clock = clock
        self._fan_out = ThreadPoolExecutor(FAN_OUT_THREADS, thread_name_prefix="fan-out")

    def close(self) -> None:
        """Stop taking new fan-outs; calls in flight end by their deadlines."""
        self._fan_out.shutdown(wait=False, cancel_futures=True)

    def forward(
        self,
        plan: Plan,
        signed: SignedPlan,
        pseudonym: bytes,
        consent: SignedConsent,
        start: int,
        accumulator: EncryptedContribution | None,
        deadline_ms: int,
    ) -> RouteResult:
        """Run hops ``start..`` and return the final accumulator and every hop's outcome. For
        a TREE plan the requester's walk (``start`` 0, no accumulator) calls the root."""
        if plan.mode is RouteMode.TREE and start == 0 and accumulator is None:
            positions = tree_positions(plan.route)
            roots = tuple(i for i, p in enumerate(positions) if p.parent is None)
            return self.fan_out(plan, signed, pseudonym, consent, positions, roots, None,
                                deadline_ms)

        def call(stub: node_pb2_grpc.NodeStub, index: int, timeout_s: float) -> RouteResult:
            reply = stub.Contribute(contribute_request_to_pb(
                signed, pseudonym, consent, index, accumulator, plan.requester_key),
                timeout=timeout_s)
            final, later = contribute_reply_from_pb(reply, plan.requester_key)
            return RouteResult(final, later, plan.requester_key)

        answer, skipped = self._walk_chain(plan, start, deadline_ms, call)
        if answer is not None:
            return RouteResult(answer.accumulator, (*skipped, *answer.outcomes), answer.key)
        if accumulator is not None and skipped:
            # The failed hops may have seen this very ciphertext: send back a fresh-looking one.
            accumulator = rerandomize(accumulator, plan.requester_key)
        return RouteResult(accumulator, skipped, plan.requester_key)

    def forward_chunk(
        self,
        plan: Plan,
        signed: SignedPlan,
        key: BatchPublicKey,
        chunk_index: int,
        pseudonyms: bytes,
        proof: tuple[bytes, ...],
        start: int,
        accumulator: BatchCipher | None,
        deadline_ms: int,
    ) -> tuple[BatchCipher | None, tuple[HopOutcome, ...]]:
        """A portfolio chunk down the CHAIN from hop ``start``, like :meth:`forward`."""

        def call(stub: node_pb2_grpc.NodeStub, index: int, timeout_s: float
                 ) -> tuple[BatchCipher | None, tuple[HopOutcome, ...]]:
            reply = stub.ContributePortfolio(portfolio_chunk_to_pb(
                signed, index, chunk_index, pseudonyms, proof, accumulator), timeout=timeout_s)
            return portfolio_reply_from_pb(reply, key)

        answer, skipped = self._walk_chain(plan, start, deadline_ms, call)
        if answer is not None:
            return answer[0], (*skipped, *answer[1])
        if accumulator is not None and skipped:
            accumulator = rerandomize_batch(key, accumulator)
        return accumulator, skipped

    def open_portfolio(self, plan: Plan, signed: SignedPlan, consent: SignedConsent,
                       public_key: bytes) -> dict[str, str]:
        """Hand every hop of a batch plan the job's key and consent, all at once; the members
        that refused, with their error codes (chunks then skip them as they would a member
        that is down)."""

        def open_one(index: int) -> str | None:
            hop = plan.route[index]
            try:
                self._directory.require_active(hop.member_id)
                self._peers.stub(hop.member_id, hop.endpoint).OpenPortfolio(
                    open_portfolio_to_pb(OpenPortfolioCall(signed, consent, public_key, index)),
                    timeout=2 * plan.fallback.hop_timeout_ms / 1000)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, default=ErrorCode.NODE_UNAVAILABLE)
            except FedCreditError as exc:
                error = exc
            else:
                return None
            log.warning("portfolio %s: %s refused the job (%s)", plan.query_id, hop.member_id,
                        error.code)
            return error.code.value

        with ThreadPoolExecutor(min(8, len(plan.route))) as pool:
            codes = list(pool.map(open_one, range(len(plan.route))))
        return {hop.member_id: code for hop, code in zip(plan.route, codes, strict=True)
                if code is not None}

    def _walk_chain(
        self, plan: Plan, start: int, deadline_ms: int,
        call: Callable[[node_pb2_grpc.NodeStub, int, float], R],
    ) -> tuple[R | None, tuple[HopOutcome, ...]]:
        """Call hops ``start..`` in order until one answers (it walks the rest of the route
        itself); the hops skipped before it, per the plan's fallbacks."""
        skipped: list[HopOutcome] = []
        for index in range(start, len(plan.route)):
            hop = plan.route[index]
            hops_left = len(plan.route) - index
            budget_ms = min(
                deadline_ms - self._clock() - RETURN_MARGIN_MS,
                plan.fallback.call_budget_ms(hops_left),
            )
            if budget_ms <= 0:
                skipped.append(HopOutcome(hop.member_id, False, ErrorCode.DEADLINE_EXCEEDED.value))
                continue
            try:
                # A member suspended after planning gets nothing from us, however fresh the plan.
                self._directory.require_active(hop.member_id)
            except FedCreditError as exc:
                log.warning("query %s: skipping %s (%s)", plan.query_id, hop.member_id, exc.code)
                skipped.append(HopOutcome(hop.member_id, False, exc.code.value))
                continue
            try:
                answer = call(self._peers.stub(hop.member_id, hop.endpoint), index,
                              budget_ms / 1000)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, default=ErrorCode.NODE_UNAVAILABLE)
                if error.code in NOT_SKIPPABLE or not plan.fallback.skip_unreachable:
                    if skipped:
                        error = FedCreditError(f"{error.detail}; skipped before {hop.member_id}: "
                                               f"{describe_skips(skipped)}", code=error.code)
                    raise error from None
                log.warning("query %s: skipping %s (%s)", plan.query_id, hop.member_id, error.code)
                skipped.append(HopOutcome(hop.member_id, False, error.code.value))
                continue
            return answer, tuple(skipped)
        return None, tuple(skipped)

    def fan_out(
        self,
        plan: Plan,
        signed: SignedPlan,
        pseudonym: bytes,
        consent: SignedConsent,
        positions: tuple[TreePosition, ...],
        children: tuple[int, ...],
        own: EncryptedContribution | None,
        deadline_ms: int,
    ) -> RouteResult:
        """Call the TREE ``children`` in parallel and add their sums to ``own`` (``None`` for
        the requester, which calls the root and adds nothing). A child that fails is skipped
        with its whole subtree (each member recorded with the child's error code); outcomes
        come back in preorder."""
        calls: list[tuple[TreePosition, Future[Any] | None, FedCreditError | None]] = []
        for index in children:
            position = positions[index]
            budget_ms = min(deadline_ms - self._clock() - RETURN_MARGIN_MS,
                            plan.fallback.tree_call_budget_ms(position.height))
            if budget_ms <= 0:
                calls.append((position, None, FedCreditError(
                    "no time left for this hop", code=ErrorCode.DEADLINE_EXCEEDED)))
                continue
            try:
                self._directory.require_active(position.hop.member_id)
            except FedCreditError as exc:
                calls.append((position, None, exc))
                continue
            request = contribute_request_to_pb(signed, pseudonym, consent, index, None,
                                               plan.requester_key)
            stub = self._peers.stub(position.hop.member_id, position.hop.endpoint)
            calls.append((position, self._fan_out.submit(
                _call_by, stub.Contribute, request, time.monotonic() + budget_ms / 1000),
                None))
        total = own
        outcomes: list[HopOutcome] = []
        for position, future, refused in calls:
            error = refused
            if future is not None:
                try:
                    partial, later = contribute_reply_from_pb(future.result(), plan.requester_key)
                except grpc.RpcError as exc:
                    error = error_from_rpc(exc, default=ErrorCode.NODE_UNAVAILABLE)
                except FedCreditError as exc:  # a reply that does not parse: skip that child
                    error = exc
                else:
                    if partial is not None:
                        total = partial if total is None else add_encrypted(
                            total, partial, plan.requester_key)
                    outcomes.extend(later)
                    continue
            assert error is not None
            if error.code in NOT_SKIPPABLE or not plan.fallback.skip_unreachable:
                for _, pending, _ in calls:  # calls already under way end by their deadline
                    if pending is not None:
                        pending.cancel()
                raise error
            log.warning("query %s: skipping %s and its subtree (%s)", plan.query_id,
                        position.hop.member_id, error.code)
            outcomes.extend(HopOutcome(m, False, error.code.value) for m in position.members)
        return RouteResult(total, tuple(outcomes), plan.requester_key)


def _call_by(method: Callable[..., R], request: object, deadline: float) -> R:
    """``method(request)`` with whatever time is left until ``deadline`` (monotonic)."""
    return method(request, timeout=max(0.001, deadline - time.monotonic()))
