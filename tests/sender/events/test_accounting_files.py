"""PowerMTA accounting files: read by header, mapped to tenant and IP, robust, incremental."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from mailplane.model.names import vmta_name
from mailplane.model.stack import Fleet
from mailplane.sender.core.accounting import (
    Cursor,
    VmtaIndex,
    is_permanent,
    parse_lines,
    parse_text,
    parse_time,
    read_file,
)

ROOT = Path(__file__).resolve().parents[3]
UTC = datetime.UTC


@pytest.fixture(scope="module")
def index(fleet: Fleet) -> VmtaIndex:
    return VmtaIndex.from_fleet(fleet)


def _vmta(fleet: Fleet, tenant: str, n: int = 0) -> tuple[str, str]:
    """(vmta name, address) of a tenant's n-th IP, computed as PowerMTA's config names it."""
    ip = fleet.tenant(tenant).ips[n]
    return vmta_name(tenant, ip.address), ip.address


HEADER = "type,timeLogged,orig,rcpt,vmta,dsnAction,dsnStatus,dsnDiag,bounceCat\n"


def test_rows_become_events_of_the_right_tenant_and_ip(fleet: Fleet, index: VmtaIndex) -> None:
    sos, sos_ip = _vmta(fleet, "sos-expat", 0)
    globex6, globex6_ip = _vmta(fleet, "globex", 1)  # IPv6: colons become dashes in the name
    text = HEADER + (
        f"d,2026-11-20 10:15:32-0700,news@mail1.example.com,ann@example.org,{sos},relayed,2.0.0 (success),"
        f"smtp;250 2.0.0 OK,\n"
        f"b,2026-11-20 10:16:00+0000,news@mail1.example.com,bob@example.org,{sos},failed,5.1.1 (bad destination "
        f"mailbox address),\"smtp;550 5.1.1 <bob@example.org>: user unknown, sorry\",bad-mailbox\n"
        f"t,2026-11-20 23:59:59,x@globex.example.com,carl@example.net,{globex6},delayed,4.7.0,"
        f"smtp;421 4.7.0 try later,\n"
    )
    batch = parse_text(text, index, "acct.csv")
    assert batch.problems == []
    delivered, bounce, deferral = batch.events
    assert (delivered.tenant, delivered.ip, delivered.vmta, delivered.kind) == ("sos-expat", sos_ip, sos, "delivered")
    assert delivered.time == datetime.datetime(2026, 11, 20, 17, 15, 32, tzinfo=UTC)  # -0700 to UTC
    assert delivered.recipient == "ann@example.org" and not delivered.permanent
    assert (bounce.kind, bounce.permanent, bounce.category) == ("bounce", True, "bad-mailbox")
    assert bounce.diagnostic == "smtp;550 5.1.1 <bob@example.org>: user unknown, sorry"  # quoted comma
    assert bounce.dsn_status.startswith("5.1.1") and bounce.line == 3
    assert (deferral.tenant, deferral.ip, deferral.kind) == ("globex", globex6_ip, "deferral")
    assert deferral.day == datetime.date(2026, 11, 20)  # no offset: UTC


def test_columns_in_another_order_and_unknown_columns(fleet: Fleet, index: VmtaIndex) -> None:
    initech, initech_ip = _vmta(fleet, "initech", 0)
    text = (
        "bounceCat,rcpt,jobId,vmta,dsnStatus,type,envId,time-logged,dsnDiag,dlvSourceIp\n"
        f"bad-domain,dee@nowhere.example,j1,{initech},5.4.4,b,e1,2026-11-21 08:00:00+0000,smtp;no such domain,"
        f"{initech_ip}\n"
        f",eve@example.org,j1,{initech},2.0.0,d,e2,2026-11-21 08:00:01+0000,smtp;250 ok,{initech_ip}\n"
    )
    batch = parse_text(text, index)
    assert batch.problems == []
    assert [(e.kind, e.recipient, e.tenant, e.ip, e.permanent) for e in batch.events] == [
        ("bounce", "dee@nowhere.example", "initech", initech_ip, True),
        ("delivered", "eve@example.org", "initech", initech_ip, False),
    ]


@pytest.mark.parametrize(("category", "status", "hard"), [
    ("bad-mailbox", "5.1.1", True),
    ("inactive-mailbox", "5.2.1", True),
    ("bad-domain", "4.4.4", True),          # the address is bad whatever the code
    ("", "5.1.1", True),                    # no category: the status decides
    ("other", "5.0.0", True),
    ("spam-related", "5.7.1", True),
    ("policy-related", "4.7.1", False),
    ("quota-issues", "5.2.2", False),        # a full mailbox empties: not hard
    ("message-expired", "5.4.7", False),     # retries ran out: the address may be fine
    ("no-answer-from-host", "4.4.1", False),
    ("", "", False),
])
def test_hard_and_soft_bounces(category: str, status: str, hard: bool) -> None:
    assert is_permanent(category, status) is hard


def test_soft_bounce_and_feedback_records(fleet: Fleet, index: VmtaIndex) -> None:
    vmta, ip = _vmta(fleet, "sos-expat", 1)
    text = HEADER + (
        f"b,2026-11-20 10:00:00+0000,n@mail1.example.com,full@example.org,{vmta},failed,5.2.2,"
        f"smtp;552 mailbox full,quota-issues\n"
        f"f,2026-11-22 03:00:00+0000,n@mail1.example.com,angry@example.org,{vmta},,,,\n"
    )
    bounce, complaint = parse_text(text, index).events
    assert (bounce.kind, bounce.permanent) == ("bounce", False)
    assert (complaint.kind, complaint.permanent, complaint.ip, complaint.recipient) == (
        "complaint", False, ip, "angry@example.org")


def test_feedback_without_vmta_maps_by_source_address(fleet: Fleet, index: VmtaIndex) -> None:
    _, ip = _vmta(fleet, "globex", 0)
    text = f"type,timeLogged,rcpt,vmta,dlvSourceIp\nf,2026-11-22 03:00:00+0000,a@example.org,,{ip}\n"
    (event,) = parse_text(text, index).events
    assert (event.tenant, event.ip, event.vmta, event.kind) == ("globex", ip, vmta_name("globex", ip), "complaint")


def test_malformed_rows_are_reported_with_their_line_and_skipped(fleet: Fleet, index: VmtaIndex) -> None:
    vmta, _ = _vmta(fleet, "sos-expat", 0)
    text = HEADER + (
        f"d,2026-11-20 10:00:00+0000,o@x.example,ok1@example.org,{vmta},relayed,2.0.0,ok,\n"   # 2
        f"d,yesterday-ish,o@x.example,a@example.org,{vmta},relayed,2.0.0,ok,\n"                # 3 bad time
        "d,2026-11-20 10:00:00+0000,o@x.example\n"                                              # 4 truncated
        f"d,2026-11-20 10:00:00+0000,o@x.example,,{vmta},relayed,2.0.0,ok,\n"                  # 5 no rcpt
        "\n"                                                                                    # 6 blank
        "d,2026-11-20 10:00:00+0000,o@x.example,b@example.org,other-10-0-0-1,relayed,2.0.0,ok,\n"  # 7 unknown
        "d,2026-11-20 10:00:00+0000,o@x.example,b@example.org,,relayed,2.0.0,ok,\n"            # 8 no vmta
        f"tq,2026-11-20 10:00:00+0000,,,{vmta},,4.4.1,no answer,\n"                           # 9 queue deferral
        "d\x00,2026-11-20 10:00:00+0000\n"                                                     # 10 NUL
        f"d,2026-11-20 10:00:01+0000,o@x.example,ok2@example.org,{vmta},relayed,2.0.0,ok,\n"   # 11
    )
    batch = parse_text(text, index, "acct-2026.csv")
    assert [(e.recipient, e.kind) for e in batch.events] == [
        ("ok1@example.org", "delivered"), ("", "deferral"), ("ok2@example.org", "delivered")]
    assert [p.line for p in batch.problems] == [3, 4, 5, 7, 8, 10]
    messages = [str(p) for p in batch.problems]
    assert messages[0] == "acct-2026.csv:3: cannot read the time 'yesterday-ish'"
    assert messages[1] == "acct-2026.csv:4: 3 fields, the header has 9"
    assert "no recipient" in messages[2]
    assert messages[3] == "acct-2026.csv:7: virtual MTA 'other-10-0-0-1' is not an IP of this fleet"
    assert "no vmta" in messages[4]
    assert batch.ignored == 0
    assert batch.cursor.line == 11


def test_rows_without_header_and_header_without_needed_columns(fleet: Fleet, index: VmtaIndex) -> None:
    vmta, _ = _vmta(fleet, "sos-expat", 0)
    row = f"d,2026-11-20 10:00:00+0000,o@x.example,a@example.org,{vmta},relayed,2.0.0,ok,\n"
    batch = parse_text(row + "type,orig,dsnStatus\n" + row + HEADER + row, index, "f.csv")
    assert [str(p) for p in batch.problems] == [
        "f.csv:1: row before any header row",
        "f.csv:2: header lacks timeLogged: its rows are skipped",
    ]
    assert [e.line for e in batch.events] == [5]
    assert batch.ignored == 1


def test_time_formats() -> None:
    expected = datetime.datetime(2026, 11, 20, 17, 15, 32, tzinfo=UTC)
    for text in ("2026-11-20 10:15:32-0700", "2026-11-20T10:15:32-07:00", "2026-11-20 17:15:32",
                 "Fri, 20 Nov 2026 17:15:32 +0000"):
        assert parse_time(text) == expected, text
    assert parse_time("20/11/2026") is None


def test_incremental_reading_of_a_growing_file_counts_each_row_once(
        fleet: Fleet, index: VmtaIndex, tmp_path: Path) -> None:
    vmta, _ = _vmta(fleet, "globex", 0)
    path = tmp_path / "acct.csv"

    def row(n: int) -> str:
        return f"d,2026-11-20 10:00:{n:02d}+0000,o@x.example,r{n}@exämple.org,{vmta},relayed,2.0.0,ok,\n"

    path.write_text(HEADER + row(1) + row(2), encoding="utf-8")
    first = read_file(path, index)
    assert [e.recipient for e in first.events] == ["r1@exämple.org", "r2@exämple.org"]
    assert first.cursor.offset == path.stat().st_size  # bytes, with the non-ASCII ä counted as 2

    again = read_file(path, index, first.cursor)
    assert again.events == [] and again.problems == []

    with path.open("a", encoding="utf-8") as f:
        f.write(row(3) + row(4)[:30])  # PowerMTA is half-way through row 4
    second = read_file(path, index, first.cursor)
    assert [(e.recipient, e.line) for e in second.events] == [("r3@exämple.org", 4)]
    assert second.problems == []

    with path.open("a", encoding="utf-8") as f:
        f.write(row(4)[30:])
    third = read_file(path, index, Cursor.from_dict(second.cursor.to_dict()))  # stored and restored
    assert [(e.recipient, e.line) for e in third.events] == [("r4@exämple.org", 5)]

    total = first.events + again.events + second.events + third.events
    assert sorted(e.recipient for e in total) == [f"r{n}@exämple.org" for n in range(1, 5)]


def test_rotated_or_truncated_file_is_read_from_its_start(fleet: Fleet, index: VmtaIndex, tmp_path: Path) -> None:
    vmta, _ = _vmta(fleet, "globex", 0)
    path = tmp_path / "acct.csv"
    rows = [f"d,2026-11-20 10:00:0{n}+0000,o@x.example,r{n}@example.org,{vmta},relayed,2.0.0,ok,\n"
            for n in range(4)]
    path.write_text(HEADER + rows[0] + rows[1], encoding="utf-8")
    cursor = read_file(path, index).cursor
    path.rename(tmp_path / "acct-old.csv")   # PowerMTA's move-interval
    path.write_text(HEADER + rows[2], encoding="utf-8")
    rotated = read_file(path, index, cursor)
    assert [e.recipient for e in rotated.events] == ["r2@example.org"]
    with path.open("w", encoding="utf-8") as f:   # same file (same inode), truncated and restarted
        f.write(HEADER)
    later = read_file(path, index, rotated.cursor)
    assert later.events == [] and later.problems == [] and later.cursor.offset == len(HEADER)
    with path.open("a", encoding="utf-8") as f:
        f.write(rows[3])
    assert [e.recipient for e in read_file(path, index, later.cursor).events] == ["r3@example.org"]


def test_missing_file_is_a_problem_not_a_traceback(index: VmtaIndex, tmp_path: Path) -> None:
    cursor = Cursor(offset=10, line=1)
    batch = read_file(tmp_path / "nope.csv", index, cursor)
    assert batch.events == [] and batch.cursor == cursor
    assert str(batch.problems[0]).startswith(f"{tmp_path / 'nope.csv'}:0: cannot read")


def test_lines_are_parsed_from_a_resumed_cursor(fleet: Fleet, index: VmtaIndex) -> None:
    """The pure parser over any stream: the header comes from the cursor when resuming mid-file."""
    vmta, _ = _vmta(fleet, "initech", 1)
    header = tuple(HEADER.strip().split(","))
    lines = [f"b,2026-11-20 10:00:00+0000,o@x.example,z@example.org,{vmta},failed,5.1.1,unknown,\r\n"]
    batch = parse_lines(lines, index, Cursor(offset=100, line=7, header=header), "acct.csv")
    (event,) = batch.events
    assert (event.line, event.permanent, event.tenant) == (8, True, "initech")
    assert batch.cursor.offset == 100 + len(lines[0]) and batch.cursor.line == 8


def test_bytes_that_are_not_utf8_are_counted_exactly_and_replaced(
        fleet: Fleet, index: VmtaIndex, tmp_path: Path) -> None:
    vmta, _ = _vmta(fleet, "globex", 0)
    path = tmp_path / "acct.csv"
    row = f"b,2026-11-20 10:00:00+0000,o@x.example,a@example.org,{vmta},failed,5.1.1,smtp;550 caf\xe9,\n"
    path.write_bytes(HEADER.encode() + row.encode("latin-1"))
    batch = read_file(path, index)
    (event,) = batch.events
    assert event.diagnostic == "smtp;550 caf\ufffd"
    assert batch.cursor.offset == path.stat().st_size
    assert read_file(path, index, batch.cursor).events == []


# --- the record types and field layouts PowerMTA documents (d, b, t, tq, rb, f) ------------------

DOCUMENTED = {
    "d": "type,timeLogged,timeQueued,totalSecondsQueued,orig,rcpt,orcpt,dsnAction,dsnStatus,dsnDiag,dsnMta,bounceCat,"
         "srcType,srcMta,dlvType,dlvSourceIp,dlvDestinationIp,dlvEsmtpAvailable,dlvSize,vmta,jobId,envId,queue,"
         "vmtaPool",
    "tq": "type,timeLogged,queue,vmta,dsnStatus,dsnDiag,dsnMta,dlvType,dlvSourceIp,dlvDestinationIp",
    "rb": "type,timeLogged,orig,rcpt,orcpt,dsnStatus,dsnDiag,dsnMta,dsnReportingMta,bounceCat,srcType,srcMta,envId,"
          "format",
    "f": "type,timeLogged,repSourceIp,feedbackType,format,userAgent,envId,orig,rcpt,reportingMta,dlvSourceIp,"
         "reportedDomain",
}


def test_every_documented_record_layout_reaches_its_ip(fleet: Fleet, index: VmtaIndex) -> None:
    """Rows in the field layout of PowerMTA's accounting chapter, a header per record type as a file
    with several types carries them: each lands on the IP it is about, however it names it."""
    from mailplane.model.names import verp_address

    vmta, ip = _vmta(fleet, "sos-expat", 1)
    return_path = verp_address(4711, ip, "marketing.rp.news.example.com")
    when = "2026-11-22 03:00:00+0000"
    d = (f"d,{when},{when},5,{return_path},a@example.org,,relayed,2.0.0,smtp;250 ok,mx.example.org,,smtp,"
         f"127.0.0.1,smtp,{ip},198.51.100.7,yes,1234,{vmta},,,example.org/{vmta},sos-expat-marketing-pool")
    tq = f"tq,{when},gmail.rollup/{vmta},{vmta},4.7.28,421-4.7.28 unusual rate,gmail-smtp-in.l.google.com,smtp,{ip},"
    rb = (f"rb,{when},{return_path},gone@example.org,,5.1.1,smtp;550 5.1.1 no such user,mx.example.org,"
          "mx.example.org,bad-mailbox,smtp,,,dsn")
    f = (f"f,{when},198.51.100.9,abuse,arf,Yahoo!-Mail-Feedback/2.0,,{return_path},angry@example.org,"
         f"feedback.yahoo.com,{ip},news.example.com")
    text = "".join(f"{DOCUMENTED[kind]}\n{row}\n" for kind, row in (("d", d), ("tq", tq), ("rb", rb), ("f", f)))
    batch = parse_text(text, index, "acct.csv")
    assert batch.problems == []
    got = [(e.kind, e.ip, e.tenant, e.recipient, e.permanent) for e in batch.events]
    assert got == [("delivered", ip, "sos-expat", "a@example.org", False),
                   ("deferral", ip, "sos-expat", "", False),
                   ("bounce", ip, "sos-expat", "gone@example.org", True),
                   ("complaint", ip, "sos-expat", "angry@example.org", False)]


def test_a_remote_bounce_to_an_address_mailplane_never_gave_is_a_problem(index: VmtaIndex) -> None:
    text = (DOCUMENTED["rb"] + "\n" + "rb,2026-11-22 03:00:00+0000,someone@news.example.com,gone@example.org,,5.1.1,"
            "x,mx.example.org,mx.example.org,bad-mailbox,smtp,,,dsn\n")
    batch = parse_text(text, index, "acct.csv")
    assert batch.events == []
    assert [str(p) for p in batch.problems] == [
        "acct.csv:2: return path 'someone@news.example.com' is not an IP of this fleet"]
