"""One database URL: the engine, its transactions and the small durable state every repository shares.

SQLite (a file, one instance) or PostgreSQL (several instances sharing one queue).  The repositories
of :mod:`mailplane.sender.db` each take a :class:`Database` and run their statements through it;
none of them imports another's owner.

Concurrency, per engine:

* SQLite: WAL (readers never block the writer), ``busy_timeout`` (a writer waits for the lock
  instead of failing) and ``BEGIN IMMEDIATE`` for every transaction: the write lock is taken at
  the start, so a read-decide-write transaction can never be interleaved with another writer
  (a deferred BEGIN could read, lose the upgrade race and fail, or act on a stale read).
* PostgreSQL: claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` (workers never wait on each
  other's batches and never take the same row); counters are locked with ``FOR UPDATE`` in one
  fixed order (message, token bucket, daily counters, hourly counters, each sorted), so two
  transactions cannot deadlock and none reads a value another is about to change.

Times are UTC epoch seconds (a float): one representation on both engines, compared in SQL with
no time-zone handling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mailplane.sender.db.schema import add_missing_columns, metadata, service_state, upsert

log = logging.getLogger("mailplane.sender")

DEFAULT_URL = "sqlite:///mailplane-sender.db"


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver we depend on)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_setup(engine: Engine) -> None:
    """Own the transactions (pysqlite's implicit BEGIN is deferred) and set WAL and the wait."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a 202 means committed to disk, even in WAL
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Reads alone (``Store.reading``) need no write lock: under WAL they see the last commit.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


_RETRYABLE_PG = {"40P01", "40001"}  # deadlock detected, serialization failure: safe to redo


class Database:
    """The engine behind one database URL, safe to share between threads; the schema made or brought up to date."""

    def __init__(self, url: str = DEFAULT_URL, *, clock: Callable[[], float] = time.time, create: bool = True):
        self.url = normalise_url(url)
        self.clock = clock
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            if u.database in (None, "", ":memory:"):
                raise ValueError("the queue must be durable: give SQLite a file, not :memory:")
            self.engine = create_engine(self.url, connect_args={"timeout": 60, "check_same_thread": False},
                                        pool_size=16, max_overflow=16)
            _sqlite_setup(self.engine)
        elif self.dialect == "postgresql":
            self.engine = create_engine(self.url, pool_size=8, max_overflow=16, pool_pre_ping=True)
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite:///FILE or postgresql://...")
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        if create:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                for column in add_missing_columns(conn):
                    log.warning("database upgraded: added column %s", column)

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` on SQLite, READ COMMITTED plus row locks on PostgreSQL.

        On SQLite this process's writers take turns on a lock of their own first: SQLite has one
        writer, and a thread that finds it busy sleeps in SQLite's busy handler (1 ms, then up to
        100 ms a try), so a few threads writing at once (delivery workers, the API, the SMTP
        listener) would spend their time asleep.  Another process still waits in the busy handler.
        """
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only look (status pages, metrics) that never waits for or blocks a writer on SQLite."""
        with self.engine.connect() as conn:
            conn.execution_options(read_only=True)
            try:
                yield conn
            finally:
                conn.rollback()

    def run(self, work: Callable[[Connection], Any], attempts: int = 5) -> Any:
        """Run ``work`` in a transaction, redoing it on a PostgreSQL deadlock or serialization failure.

        Our fixed lock order should make deadlocks impossible; redoing is the belt to those braces.
        """
        for attempt in range(attempts):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except DBAPIError as err:
                code = getattr(err.orig, "sqlstate", None)
                if code not in _RETRYABLE_PG or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def insert(self, table: Table) -> Any:
        """``INSERT`` with ``ON CONFLICT`` on this engine."""
        return upsert(self.dialect, table)

    def for_update(self, statement: Any, skip_locked: bool = False) -> Any:
        """Row locks on PostgreSQL; nothing on SQLite, whose ``BEGIN IMMEDIATE`` already excludes writers."""
        return statement.with_for_update(skip_locked=skip_locked) if self.dialect == "postgresql" else statement

    def ping(self) -> None:
        """A trivial read: raises when the database does not answer (the health check)."""
        with self.reading() as conn:
            conn.execute(select(1)).scalar()

    # -- small durable state (cursors, markers) ----------------------------------------

    def get_state(self, key: str) -> Any:
        with self.reading() as conn:
            return conn.execute(select(service_state.c.value).where(service_state.c.key == key)).scalar()

    def put_state(self, key: str, value: Any, conn: Connection | None = None) -> None:
        """Set ``key``; inside the caller's transaction when ``conn`` is given (a cursor moves with its data)."""

        def work(c: Connection) -> None:
            stmt = self.insert(service_state).values(key=key, value=value, updated_at=self.clock())
            c.execute(stmt.on_conflict_do_update(index_elements=[service_state.c.key],
                                                 set_={"value": value, "updated_at": self.clock()}))

        if conn is not None:
            work(conn)
        else:
            self.run(work)
