"""An applicant's inquiry history, answered from the alliance ledger by their institution.

Consent entries carry a tag only members can compute (:func:`mpc.pseudonym.ledger_subject_tag`,
keyed per inquiry), so the coordinator cannot link one applicant's inquiries. To answer, the
applicant's institution downloads the (index, query id, tag) triples of a time window,
recomputes the tag of each for the applicant's pseudonym, and fetches only the entries that
match. The coordinator then learns which entries belong to one (unnamed) applicant — the price
of the answer, recorded in docs/security.md.
"""

from __future__ import annotations

import hmac

from fedcredit.errors import FedCreditError
from mpc.pseudonym import SubjectKey, ledger_subject_tag
from node.audit_trail import Inquiry
from node.coordinator_client import CoordinatorClient
from node.directory import MemberDirectory

#: Entries fetched per call.
PAGE = 500


def inquiry_history(client: CoordinatorClient, directory: MemberDirectory, key: SubjectKey,
                    pseudonym: bytes, since_ms: int, until_ms: int) -> list[Inquiry]:
    matches = [
        t.index for t in client.consent_tags(since_ms, until_ms)
        if hmac.compare_digest(ledger_subject_tag(key, pseudonym, t.query_id), t.subject_tag)
    ]
    inquiries: list[Inquiry] = []
    for start in range(0, len(matches), PAGE):
        for entry in client.consent_entries(matches[start:start + PAGE]):
            try:
                name = directory.member(entry.requester_id).display_name
            except FedCreditError:  # a member that has left the alliance keeps its id
                name = entry.requester_id
            inquiries.append(Inquiry(entry.requester_id, name, entry.purpose,
                                     entry.created_unix_ms, entry.query_id))
    return sorted(inquiries, key=lambda i: i.at_ms, reverse=True)
