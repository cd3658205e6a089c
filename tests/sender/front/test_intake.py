"""The SMTP listener's group commit (``mailplane.sender.front.intake.GroupCommitter``) on a real store: sessions
share one transaction, yet each is judged by itself, and one session's refusal refuses no other's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailplane.model.loader import load_stack
from mailplane.sender.config import AwsSettings, SenderConfig
from mailplane.sender.core.mime_in import read_submission
from mailplane.sender.core.refusal import ApiError
from mailplane.sender.core.submit import Checked, check_submission
from mailplane.sender.front.intake import GroupCommitter
from mailplane.sender.service import Service

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    config = SenderConfig(database_url=f"sqlite:///{tmp_path / 'q.db'}", aws=AwsSettings(account_id="123456789012"),
                          unsubscribe_keys=["k" * 32])
    svc = Service(load_stack(ROOT / "stacks" / "prod"), config, stack_name="prod")
    yield svc
    svc.close()


def checked(service: Service, to: str, *, subject: str = "Receipt", message_id: str | None = None) -> list[
        tuple[int, Checked]]:
    head = f"From: no-reply@mail1.example.com\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    submission = read_submission(head.encode() + b"\r\nHello.\r\n")
    tenant = service.fleet.tenant("sos-expat")
    result = check_submission(0, submission, to, "transactional", tenant, "app", service.fleet)
    assert isinstance(result, Checked)
    return [(0, result)]


def test_one_sessions_refusal_refuses_no_other(service: Service) -> None:
    service.store.suppress("sos-expat", "gone@example.org", "hard_bounce", "test")
    committer = GroupCommitter(service)
    try:
        # handed over together: one batch, as concurrent sessions' messages are
        futures = [committer.submit("sos-expat", "app", checked(service, to))
                   for to in ("a@example.org", "gone@example.org", "b@example.org")]
        ok_a, refused, ok_b = (f.exception(timeout=30) or f.result() for f in futures)
    finally:
        committer.close()
    assert isinstance(refused, ApiError) and refused.status == 422
    assert refused.problems[0]["code"] == "suppressed"
    assert isinstance(ok_a, list) and isinstance(ok_b, list) and ok_a[0].created and ok_b[0].created
    assert service.store.counts() == {"queued": 2}


def test_an_idempotency_conflict_refuses_only_the_conflicting_session(service: Service) -> None:
    committer = GroupCommitter(service)
    try:
        first = committer.submit("sos-expat", "app", checked(service, "a@example.org", message_id="<m1@app>"))
        first.result(timeout=30)
        futures = [
            committer.submit("sos-expat", "app", checked(service, "a@example.org", subject="Other",
                                                         message_id="<m1@app>")),  # the same id, another message
            committer.submit("sos-expat", "app", checked(service, "c@example.org")),
            committer.submit("sos-expat", "app", checked(service, "a@example.org", message_id="<m1@app>")),
        ]
        conflict, fresh, retry = (f.exception(timeout=30) or f.result() for f in futures)
    finally:
        committer.close()
    assert isinstance(conflict, ApiError) and conflict.status == 409
    assert isinstance(fresh, list) and fresh[0].created
    assert isinstance(retry, list) and not retry[0].created  # the client's retry: queued once
    assert service.store.counts() == {"queued": 2}


def test_one_batch_judges_each_of_its_sessions(service: Service) -> None:
    """The same, with the three handed to one commit for certain (not left to the thread's timing)."""
    from concurrent.futures import Future

    from mailplane.sender.front.intake import _Item

    service.store.suppress("sos-expat", "gone@example.org", "hard_bounce", "test")
    committer = GroupCommitter(service)
    try:
        items = [_Item("sos-expat", "app", checked(service, to), Future())
                 for to in ("a@example.org", "gone@example.org", "b@example.org")]
        committer._commit(items)
    finally:
        committer.close()
    results = [item.done.exception(timeout=1) or item.done.result() for item in items]
    assert [type(r).__name__ for r in results] == ["list", "ApiError", "list"]
    assert service.store.counts() == {"queued": 2}


def test_small_messages_are_committed_ahead_of_a_large_one_handed_over_with_them(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receipt handed over with a large message is committed first, in its own commit: it does not wait for
    the writing of megabytes (the committer is held on a first commit so the rest arrive together)."""
    import threading

    from mailplane.sender.front import intake

    gate, order = threading.Event(), []
    real = intake.commit

    def spy(svc: Service, entries: list[tuple[int, Checked]]) -> Any:
        order.append(sorted(c.new.to_addr for _, c in entries))
        if len(order) == 1:
            gate.wait(30)  # the first commit holds the thread while the others are handed over
        return real(svc, entries)

    monkeypatch.setattr(intake, "commit", spy)
    committer = GroupCommitter(service, large=1000)
    try:
        first = committer.submit("sos-expat", "app", checked(service, "first@example.org"), size=10)
        deadline = time.monotonic() + 30
        while not order:  # the thread is in the first commit, waiting at the gate
            assert not first.done() and time.monotonic() < deadline, first.exception(timeout=0)
            time.sleep(0.01)
        big = committer.submit("sos-expat", "app", checked(service, "big@example.org"), size=5_000_000)
        small = [committer.submit("sos-expat", "app", checked(service, f"s{n}@example.org"), size=500)
                 for n in range(2)]
        gate.set()
        for future in (first, big, *small):
            future.result(timeout=30)
    finally:
        committer.close()
    assert order == [["first@example.org"], ["s0@example.org", "s1@example.org"], ["big@example.org"]]
