"""`hotline orders remask`: orders stored before the masker learned names, rooms, plates and e-mail are masked
again from their unmasked text (review M4 leftover), in batches, and a second run changes nothing."""
from __future__ import annotations

from sqlalchemy import select, update
from typer.testing import CliRunner

from hotline.core.config import get_settings
from hotline.core.db import make_engine, session_factory, transaction
from hotline.core.migrate import upgrade
from orders.intake import file_complaint
from orders.models import WorkOrder
from orders.remask import orders_to_remask, remask_after
from orders.service import Actor

AGENT = Actor("agent-1", "agent")
LETTER = ("尊敬的市长：我叫李建国，住在望月湖小区3栋502室，电话13812345678，车牌湘A12345，邮箱li@example.com。"
          "楼下烧烤店油烟直排，孩子晚上睡不着😡，恳请处理！")
QUIET = "岳麓区望月湖街道路灯坏了一个多星期，晚上一片漆黑。"
OLD_MASKING = LETTER.replace("13812345678", "138****5678")   # what the masker did before M4: phones only


def _file(session, text: str) -> WorkOrder:
    order, _ = file_complaint(session, text=text, channel="hotline", actor=AGENT, routing=None, routing_model=None,
                              auto_dispatch=False)
    return order


def _store_with_old_masking(factory) -> tuple[int, int]:
    with transaction(factory) as session:
        letter, quiet = _file(session, LETTER), _file(session, QUIET)
        session.flush()
        session.execute(update(WorkOrder).where(WorkOrder.id == letter.id).values(text_masked=OLD_MASKING))
        return letter.id, quiet.id


def _masked(factory, order_id: int) -> str:
    with factory() as session:
        return session.scalar(select(WorkOrder.text_masked).where(WorkOrder.id == order_id))


def test_old_masking_is_replaced_in_batches_and_a_second_run_changes_nothing(factory):
    letter_id, quiet_id = _store_with_old_masking(factory)
    assert "李建国" in _masked(factory, letter_id)
    steps, last = [], 0
    while True:
        with transaction(factory) as session:
            step = remask_after(session, after_id=last, limit=1)
        if not step.seen:
            break
        steps.append(step.changed)
        last = step.last_id
    assert steps == [1, 0]   # one order per batch; only the letter was masked differently
    masked = _masked(factory, letter_id)
    for secret in ("李建国", "502", "13812345678", "湘A12345", "li@example.com"):
        assert secret not in masked
    assert masked.endswith("孩子晚上睡不着😡，恳请处理！") and _masked(factory, quiet_id) == QUIET
    with transaction(factory) as session:
        assert orders_to_remask(session) == 2 and remask_after(session, after_id=0).changed == 0


def test_the_command_reports_what_it_changed(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'remask.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    _store_with_old_masking(session_factory(engine))
    monkeypatch.setenv("HOTLINE_DATABASE_URL", url)
    get_settings.cache_clear()
    from hotline.cli import app

    try:
        first = CliRunner().invoke(app, ["orders", "remask", "--batch", "1"], env={"COLUMNS": "200"})
        assert first.exit_code == 0, first.output
        assert "2 orders read, 1 masked differently now" in first.output and "李建国" not in first.output
        again = CliRunner().invoke(app, ["orders", "remask"], env={"COLUMNS": "200"})
        assert "2 orders read, 0 masked differently now" in again.output
        assert CliRunner().invoke(app, ["orders", "remask", "--batch", "0"]).exit_code == 2   # refused, named
    finally:
        get_settings.cache_clear()
        engine.dispose()
