"""The sender's tables: the queue, the shared counters, suppressions, per-IP outcomes and small state.

One SQLAlchemy Core schema for SQLite and PostgreSQL.  Only the store and the repositories it owns
(:mod:`mailplane.sender.db.store`, :mod:`mailplane.sender.db.counters`, :mod:`mailplane.sender.db.ledger`)
read or write them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateColumn

metadata = MetaData()

_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

messages = Table(
    "messages", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("stream", String(16), nullable=False),
    Column("from_addr", String(320), nullable=False),
    Column("to_addr", String(320), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("idempotency_key", String(255)),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until", Float),
    Column("transport", String(8)),  # ``ses`` or ``pmta``, once reserved
    Column("ip", String(45)),  # the PowerMTA IP the reservation chose (None through SES)
    Column("reserved_day", Date),  # with reserved_hour (epoch hour): the counters a refund gives back
    Column("reserved_hour", Integer),
    Column("reserved_at", Float),  # when the send was granted: latency, and the pacing tests' evidence
    Column("last_error", String(1000)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # added after the first release of the table: created by ``add_missing_columns`` on older databases
    Column("campaign", String(64), nullable=False, server_default=""),  # "" when the mail names none
    Column("turn", Float, nullable=False, server_default="0"),  # its place in its stream's queue (``turns``)
    UniqueConstraint("tenant", "sender", "idempotency_key", name="uq_messages_idempotency"),
    Index("ix_messages_due", "state", "next_attempt_at"),
    Index("ix_messages_turn", "state", "stream", "turn", "next_attempt_at"),  # the claim: transactional first,
    # then the lowest turns; next_attempt_at in the index so mail deferred to later is passed over in it
    Index("ix_messages_lease", "state", "claimed_until"),
)

daily_counters = Table(
    "daily_counters", metadata,
    Column("kind", String(8), primary_key=True),  # ip (key: address), tenant (key: name), ses (key: region)
    Column("key", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("sent", Integer, nullable=False, default=0),
)

hourly_counters = Table(
    "hourly_counters", metadata,
    Column("kind", String(8), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("hour", Integer, primary_key=True),  # epoch hour (UTC seconds // 3600): the plans' hourly ceiling
    Column("sent", Integer, nullable=False, default=0),
)

suppressions = Table(
    "suppressions", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("address", String(320), primary_key=True),  # lower-cased: see ``canonical_address``
    Column("reason", String(32), nullable=False),  # hard_bounce, complaint, unsubscribe
    Column("source", String(255), nullable=False),  # where it was learnt: smtp, ses-event, accounting file
    Column("created_at", Float, nullable=False),
)

ip_day_stats = Table(
    "ip_day_stats", metadata,
    Column("ip", String(45), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("delivered", Integer, nullable=False, default=0),
    Column("hard_bounces", Integer, nullable=False, default=0),
    Column("soft_bounces", Integer, nullable=False, default=0),
    Column("complaints", Integer, nullable=False, default=0),
    Column("deferrals", Integer, nullable=False, default=0),
)

service_state = Table(
    "service_state", metadata,
    Column("key", String(255), primary_key=True),  # e.g. accounting cursors, alerts already sent
    Column("value", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

token_buckets = Table(
    "token_buckets", metadata,  # the SES send rate: a schedule of slots shared by every worker (``pacing``)
    Column("name", String(64), primary_key=True),
    Column("next_slot", Float, nullable=False),  # the earliest time the next send may go
    Column("recent", JSON, nullable=False),  # the last grants' times, newest last: the 1-second window
    Column("updated_at", Float, nullable=False),
)


pauses = Table(
    "pauses", metadata,  # operators' and the tenant guard's pauses and drains (``pauses``)
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("scope", String(8), nullable=False),  # tenant, stream, ip, domain
    Column("tenant", String(64)),  # the tenant paused, or whose stream / IP / recipient domain; none: every tenant
    Column("key", String(320), nullable=False),  # the stream, IP or recipient domain ("" for a tenant)
    Column("mode", String(8), nullable=False),  # pause: sending waits; drain: new mail is refused
    Column("reason", String(500), nullable=False),
    Column("source", String(16), nullable=False),  # operator or guard
    Column("until", Float),  # epoch seconds it ends by itself; none: until resumed
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),  # resumed
    Index("ix_pauses_open", "ended_at"),
    # one guard pause in force per tenant, however many instances judge at once
    Index("ux_pauses_guard_open", "tenant", unique=True,
          sqlite_where=text("source = 'guard' AND ended_at IS NULL"),
          postgresql_where=text("source = 'guard' AND ended_at IS NULL")),
)


queue_turns = Table(
    "queue_turns", metadata,  # each flow's finish tag in fair queuing, and V (``turns``)
    Column("tenant", String(64), primary_key=True),  # "" (with stream and campaign "") is the row holding V
    Column("stream", String(16), primary_key=True),
    Column("campaign", String(64), primary_key=True),
    Column("finish", Float, nullable=False),
    Column("spacing", Integer, nullable=False, server_default="1"),  # the tenant's flows in the stream it shares with
)

tenant_hours = Table(
    "tenant_hours", metadata,  # what the tenant guard judges: per tenant, route and hour (``outcomes``)
    Column("tenant", String(64), primary_key=True),
    Column("route", String(45), primary_key=True),  # the PowerMTA IP, or "ses"
    Column("hour", Integer, primary_key=True),  # epoch hour (UTC seconds // 3600)
    Column("sent", Integer, nullable=False, default=0),
    Column("bounced", Integer, nullable=False, default=0),  # hard bounces
    Column("complained", Integer, nullable=False, default=0),
    # added after the first release of the table: created by ``add_missing_columns`` on older databases
    Column("delivered", Integer, nullable=False, server_default="0"),  # PowerMTA accounting, SES Delivery events
    Column("deferred", Integer, nullable=False, server_default="0"),  # accounting deferrals, SES DeliveryDelay
    Column("suppressed", Integer, nullable=False, server_default="0"),  # kept back: the recipient is suppressed
)


def add_missing_columns(conn: Connection) -> list[str]:
    """Bring an older database's tables up to this schema where that is only adding columns and indexes.

    ``create_all`` makes missing tables but leaves existing ones alone; a column added to a table
    in a later release is added here, with its server default (a column without one cannot be
    added to rows that exist, and stops the start with a message), and so is an index.  Idempotent,
    and safe when two instances start together: PostgreSQL adds ``IF NOT EXISTS``; SQLite
    serialises writers.  Returns ``table.column`` (or ``table.index``) of each one added.
    """
    inspector = inspect(conn)
    added: list[str] = []
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if column.server_default is None and not column.nullable:
                raise RuntimeError(f"the database's table {table.name} lacks column {column.name}, which has no "
                                   "default: this release needs a manual migration")
            ddl = CreateColumn(column).compile(dialect=conn.dialect)
            guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {guard}{ddl}"))
            added.append(f"{table.name}.{column.name}")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name not in indexes:
                index.create(conn, checkfirst=True)
                added.append(f"{table.name}.{index.name}")
    return added


def upsert(dialect: str, table: Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support on both engines the store runs on."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
