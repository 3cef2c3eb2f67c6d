"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL when HOTLINE_DATABASE_URL says so."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from hotline.core.clock import as_utc

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of every table (Alembic reads its metadata)."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Take transaction control away from pysqlite: with its own handling a RELEASE SAVEPOINT outside a BEGIN
    # commits, so a half-made row (no order number yet) became visible to a concurrent request.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers work while one writer commits; busy_timeout makes a second writer wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """The database holds unmasked complaints and full phone numbers: its folder is made 0700 when we create it,
    the file is created 0600 before SQLite opens it (its -wal and -shm files take the same mode), and an existing
    file readable by others is tightened."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except OSError:   # not ours to change (another account's file): SQLite reports what it cannot open
            pass


# Set on the connection of a `transaction()`: the unit of work that may write.
WRITES = "hotline_writes"


def _sqlite_begin(conn) -> None:
    # A unit of work that may write takes the write lock at its start (IMMEDIATE), so concurrent writers queue
    # (busy_timeout) instead of failing when a read snapshot cannot be upgraded. A read-only session begins
    # DEFERRED: a WAL snapshot that never waits for writers (with IMMEDIATE for every session, staff screens queued
    # behind 16 concurrent intakes: reads p95 about 500 ms under the intake benchmark).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITES) else "BEGIN")


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if "///" in url and path and path != ":memory:" and not path.startswith("file:"):
            _private_sqlite_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class WriteOutsideTransaction(RuntimeError):
    """A session opened without `transaction()` tried to write: it is never committed, so the write would be lost."""


# Off in service (such a write is logged, and lost as before); the tests turn it on so that any such write fails them.
_refuse_read_session_writes = False


def refuse_read_session_writes(on: bool = True) -> None:
    global _refuse_read_session_writes
    _refuse_read_session_writes = on


def _writes(session: Session) -> bool:
    return bool(session.in_transaction() and session.connection().get_execution_options().get(WRITES))


def _write_outside_transaction(session: Session, what: str) -> None:
    message = f"a read-only session (opened without transaction()) would write {what}; it is never committed"
    if _refuse_read_session_writes:
        raise WriteOutsideTransaction(message)
    log.error(message)


def _check_flush(session: Session, _flush_context, _instances) -> None:
    changed = [*session.new, *session.dirty, *session.deleted]
    if changed and not _writes(session):
        # Class names only: the objects hold complaint text and phone numbers.
        _write_outside_transaction(session, ", ".join(sorted({type(o).__name__ for o in changed})))


def _check_statement(state) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and not _writes(state.session):
        _write_outside_transaction(state.session, f"with {type(state.statement).__name__}")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for the engine. A unit of work that writes is `transaction(factory)`; any other session only reads,
    and a write in one is reported (a test failure, an error in the service's log) rather than lost in silence."""
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "before_flush", _check_flush)
    event.listen(factory, "do_orm_execute", _check_statement)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error. Every write goes through one (sessions opened
    without it are read-only: on SQLite they never take the write lock)."""
    session = factory()
    try:
        session.connection(execution_options={WRITES: True})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class UTCDateTime(TypeDecorator):
    """A moment stored in UTC and always read back aware (SQLite drops the zone; PostgreSQL keeps it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return as_utc(value) if value is not None else None

    def process_result_value(self, value, dialect):
        return as_utc(value) if value is not None else None


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that only reads. On PostgreSQL its statements run without BEGIN/ROLLBACK (autocommit): under READ
    COMMITTED each statement sees its own snapshot inside a transaction too, so nothing is lost, and a read saves
    two of its round trips, which under load wait on a server sharing the CPU. SQLite: a DEFERRED snapshot."""
    session = factory()
    try:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
    finally:
        session.close()
