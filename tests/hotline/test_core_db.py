"""SQLite transactions: a unit of work that may write queues for the write lock; a read never waits for one."""
from __future__ import annotations

import threading

from sqlalchemy import text

from hotline.core.db import make_engine, session_factory, transaction


def _factory(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with transaction(session_factory(engine)) as session:
        session.execute(text("CREATE TABLE complaint (id INTEGER PRIMARY KEY, body TEXT)"))
        session.execute(text("INSERT INTO complaint (body) VALUES ('小区门口路灯不亮')"))
    return engine, session_factory(engine)


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(tmp_path):
    engine, factory = _factory(tmp_path)
    read_done, seen = threading.Event(), []

    def staff_screen():
        with factory() as session:   # a read-only session
            seen.append(session.execute(text("SELECT body FROM complaint ORDER BY id")).scalars().all())
        read_done.set()

    with transaction(factory) as writer:
        writer.execute(text("INSERT INTO complaint (body) VALUES ('工地夜间施工噪音扰民😡')"))
        reader = threading.Thread(target=staff_screen)
        reader.start()
        # The writer still holds the lock: the read finishes anyway, on the snapshot before this write.
        assert read_done.wait(timeout=20), "the read waited for the writer's lock"
    reader.join()
    assert seen == [["小区门口路灯不亮"]]
    engine.dispose()


def test_two_units_of_work_queue_for_the_lock_and_both_are_kept(tmp_path):
    engine, factory = _factory(tmp_path)
    first_holds, errors = threading.Event(), []

    def second():
        try:
            first_holds.wait()
            with transaction(factory) as session:   # waits (busy_timeout) for the first, then writes
                count = session.execute(text("SELECT count(*) FROM complaint")).scalar_one()
                session.execute(text("INSERT INTO complaint (body) VALUES (:b)"), {"b": f"第{count + 1}条"})
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with transaction(factory) as session:
        count = session.execute(text("SELECT count(*) FROM complaint")).scalar_one()
        first_holds.set()
        session.execute(text("INSERT INTO complaint (body) VALUES (:b)"), {"b": f"第{count + 1}条"})
    thread.join()
    with factory() as session:
        bodies = session.execute(text("SELECT body FROM complaint ORDER BY id")).scalars().all()
    assert not errors and bodies == ["小区门口路灯不亮", "第2条", "第3条"]   # the second saw the first's row
    engine.dispose()


LETTER = "投诉：望月湖小区门口烧烤油烟直排😡，我叫李建国，电话13812345678，请尽快处理！"


def test_a_write_in_a_read_session_fails_the_tests_and_is_logged_in_service(factory, caplog):
    """Sessions opened without transaction() are never committed: what they would write is lost (or, in a
    PostgreSQL read_only() session, committed statement by statement). The tests refuse it; the service logs it."""
    import pytest
    from sqlalchemy import select, update

    from hotline.core.db import WriteOutsideTransaction, read_only, refuse_read_session_writes
    from orders.intake import file_complaint
    from orders.models import WorkOrder
    from orders.service import Actor

    with transaction(factory) as session:
        order, _ = file_complaint(session, text=LETTER, channel="hotline", actor=Actor("agent-1", "agent"),
                                  routing=None, routing_model=None, auto_dispatch=False)
        number = order.order_no
    for opened in (factory, lambda: read_only(factory)):
        with opened() as session:
            loaded = session.scalar(select(WorkOrder).where(WorkOrder.order_no == number))
            loaded.community = "望月湖社区"
            with pytest.raises(WriteOutsideTransaction, match="WorkOrder"):
                session.flush()
            session.rollback()
            with pytest.raises(WriteOutsideTransaction, match="Update"):
                session.execute(update(WorkOrder).where(WorkOrder.order_no == number).values(community="月湖社区"))
    refuse_read_session_writes(False)   # as in service
    try:
        with factory() as session:
            session.scalar(select(WorkOrder).where(WorkOrder.order_no == number)).community = "桔子洲社区"
            session.flush()
    finally:
        refuse_read_session_writes(True)
    logged = [r.getMessage() for r in caplog.records if r.name == "hotline.core.db"]
    assert logged == ["a read-only session (opened without transaction()) would write WorkOrder; it is never committed"]
    assert "13812345678" not in caplog.text and "李建国" not in caplog.text
    with transaction(factory) as session:   # a unit of work writes as before
        session.scalar(select(WorkOrder).where(WorkOrder.order_no == number)).community = "望月湖社区"
    with factory() as session:
        assert session.scalar(select(WorkOrder.community).where(WorkOrder.order_no == number)) == "望月湖社区"
