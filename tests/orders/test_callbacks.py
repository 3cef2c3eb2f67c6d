"""Call-back tasks (转人工 → 回电), orders/callbacks.py: the due-time rule with a fixed clock, one task per citizen,
masking and bounding the conversation, taking and closing. On SQLite and PostgreSQL (the `factory` fixture)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, select

from hotline.core.clock import CITY_TZ
from hotline.core.db import transaction
from orders.callbacks import (
    CONVERSATION_TURNS,
    TURN_CHARS,
    CallbackConflict,
    CallbackInvalid,
    CallbackNotFound,
    callback_due,
    close_callback,
    open_callbacks,
    request_callback,
    take_callback,
)
from orders.models import CallbackRequest
from orders.service import Actor, create_order


def beijing(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=CITY_TZ)


# 2026-12-04 is a Friday, 12-05 and 12-06 the weekend, 12-07 a Monday.
@pytest.mark.parametrize("asked, due", [
    (beijing(12, 7, 10, 0), beijing(12, 7, 10, 30)),      # working hours: within 30 minutes
    (beijing(12, 7, 8, 30), beijing(12, 7, 9, 0)),        # the first minute of the day
    (beijing(12, 7, 17, 30), beijing(12, 7, 18, 0)),      # the last request promised within 30 minutes
    (beijing(12, 7, 17, 31), beijing(12, 8, 9, 0)),       # too late for today's shift: tomorrow morning
    (beijing(12, 7, 7, 15), beijing(12, 7, 9, 0)),        # early on a working day: this morning
    (beijing(12, 7, 0, 30), beijing(12, 7, 9, 0)),        # just after midnight in Beijing (still Sunday in UTC)
    (beijing(12, 4, 19, 0), beijing(12, 7, 9, 0)),        # Friday evening: Monday morning
    (beijing(12, 5, 11, 0), beijing(12, 7, 9, 0)),        # Saturday, in what would be working hours
    (beijing(12, 6, 23, 59), beijing(12, 7, 9, 0)),       # Sunday night
    (beijing(12, 31, 16, 0), beijing(12, 31, 16, 30)),    # across no boundary, the year's last afternoon
])
def test_due_time_rule(asked, due):
    got = callback_due(asked)
    assert got == due and got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)
    assert callback_due(asked.astimezone(dt.UTC)) == due      # the same moment given in UTC


@pytest.fixture
def sessions(factory):
    with transaction(factory) as session:
        session.execute(delete(CallbackRequest))
    return factory


ANGRY = [
    {"who": "citizen", "text": "你好"},
    {"who": "assistant", "text": "您好！我是12345智能助手，可以帮您反映问题、查询工单进度。"},
    {"who": "citizen", "text": "我家楼下烧烤店天天半夜吵到两三点😡😡😡！！投诉了三次都没人管，我电话13812345678，"
                               "身份证430104199001011237，你们到底管不管？？"},
    {"who": "assistant", "text": "很抱歉给您带来困扰。请描述一下具体位置。"},
    {"who": "citizen", "text": "转人工！！！不要机器人"},
]


def test_a_request_is_masked_bounded_and_due_by_the_rule(sessions):
    long_turn = "噪音扰民，" * 300 + "我的电话是13912345678"
    turns = ANGRY + [{"who": "citizen", "text": long_turn}] + [
        {"who": "citizen" if i % 2 else "assistant", "text": f"第{i}句：还是没人管。"} for i in range(30)]
    with transaction(sessions) as session:
        task, created = request_callback(session, channel="wechat", contact="oWx_angry_citizen", phone="138 1234 5678",
                                         reason="转人工！！我电话13812345678", conversation=turns, order_no=None,
                                         now=beijing(12, 7, 14, 5))
        assert created and task.status == "open"
    with sessions() as session:
        stored = session.scalar(select(CallbackRequest))
        assert stored.phone == "13812345678"                             # whole, for the call
        assert stored.due_at == beijing(12, 7, 14, 35)
        assert "13812345678" not in stored.reason and "138****5678" in stored.reason
        assert len(stored.conversation) == CONVERSATION_TURNS            # the last turns
        assert stored.conversation[-1]["text"] == "第29句：还是没人管。"
        assert all(len(turn["text"]) <= TURN_CHARS for turn in stored.conversation)
        row = open_callbacks(session, 10)[0]
    assert row["phone"] == "138****5678" and row["status"] == "open" and row["status_label"] == "待回电"
    assert row["due_at"] == beijing(12, 7, 14, 35).astimezone(dt.UTC).isoformat()
    assert "13812345678" not in str(row) and "430104199001011237" not in str(row)


def test_masking_happens_before_the_cut(sessions):
    # A phone number across the 500-character cut must not leave its first digits readable.
    text = "啊" * (TURN_CHARS - 5) + "13812345678，快回电"
    with transaction(sessions) as session:
        request_callback(session, channel="web", contact="web:visitor-1", phone=None, reason=None,
                         conversation=[{"who": "citizen", "text": text}], order_no=None, now=beijing(12, 7, 9))
    with sessions() as session:
        kept = open_callbacks(session, 10)[0]["conversation"][0]["text"]
    assert "13812" not in kept and len(kept) <= TURN_CHARS


def test_one_open_task_per_citizen(sessions):
    with transaction(sessions) as session:
        first, created = request_callback(session, channel="web", contact="web:visitor-2", phone=None,
                                          reason="转人工", conversation=ANGRY[:3], order_no=None,
                                          now=beijing(12, 7, 10))
        assert created
    with transaction(sessions) as session:
        again, created = request_callback(session, channel="web", contact="web:visitor-2", phone="13912345678",
                                          reason="转人工 13912345678", conversation=ANGRY, order_no=None,
                                          now=beijing(12, 7, 10, 20))
        assert not created and again.id == first.id
        assert again.phone == "13912345678"                 # the number given the second time is kept
        assert again.due_at == beijing(12, 7, 10, 30)       # the promise does not move
        assert len(again.conversation) == len(ANGRY)
        # Another citizen, or the same id on another channel, is another task.
        _, other = request_callback(session, channel="wechat", contact="web:visitor-2", phone=None, reason=None,
                                    conversation=[], order_no=None, now=beijing(12, 7, 10, 20))
        assert other
    with transaction(sessions) as session:
        take_callback(session, id=first.id, actor="agent")
        _, created = request_callback(session, channel="web", contact="web:visitor-2", phone=None, reason=None,
                                      conversation=[], order_no=None, now=beijing(12, 7, 10, 40))
        assert not created                                   # taken is still open for the citizen
        close_callback(session, id=first.id, actor="agent", note="已回电，市民同意等待城管处理", order_no=None,
                       now=beijing(12, 7, 11))
        _, created = request_callback(session, channel="web", contact="web:visitor-2", phone=None, reason=None,
                                      conversation=[], order_no=None, now=beijing(12, 7, 15))
        assert created                                       # after the call, a new request is a new task
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(CallbackRequest)) == 3


def test_take_and_close(sessions):
    with transaction(sessions) as session:
        order, _ = create_order(session, text="岳麓区望月湖街道烧烤店油烟扰民", channel="web",
                                actor=Actor("assistant", "system"), caller_phone="13812345678")
        order_no = order.order_no
        task, _ = request_callback(session, channel="web", contact="web:visitor-3", phone="0731-88886666",
                                   reason=None, conversation=ANGRY, order_no=order_no.lower(), now=beijing(12, 5, 9))
        task_id = task.id
        assert task.order_no == order_no and task.due_at == beijing(12, 7, 9)
    with transaction(sessions) as session:
        assert take_callback(session, id=task_id, actor="agent").taken_by == "agent"
        assert take_callback(session, id=task_id, actor="agent").status == "taken"    # again: no change
        with pytest.raises(CallbackConflict, match="agent"):
            take_callback(session, id=task_id, actor="dispatcher")
        with pytest.raises(CallbackConflict):
            close_callback(session, id=task_id, actor="dispatcher", note=None, order_no=None)
        with pytest.raises(CallbackInvalid, match="CS20990101999999"):
            close_callback(session, id=task_id, actor="agent", note=None, order_no="CS20990101999999")
        done = close_callback(session, id=task_id, actor="agent", note="已回电：市民说油烟仍在，电话13812345678",
                              order_no=order_no, now=beijing(12, 7, 9, 10))
        assert done.status == "done" and done.done_at == beijing(12, 7, 9, 10)
        assert "13812345678" not in done.note
    with transaction(sessions) as session:
        assert open_callbacks(session, 10) == []
        with pytest.raises(CallbackConflict):
            take_callback(session, id=task_id, actor="agent")
        with pytest.raises(CallbackNotFound):
            take_callback(session, id=task_id + 1000, actor="agent")


def test_the_list_is_the_earliest_due_first(sessions):
    with transaction(sessions) as session:
        for contact, asked in (("web:late", beijing(12, 7, 16)), ("web:night", beijing(12, 6, 22)),
                               ("oWx_early", beijing(12, 7, 9, 40))):
            request_callback(session, channel="wechat" if contact.startswith("oWx") else "web", contact=contact,
                             phone=None, reason=None, conversation=[], order_no=None, now=asked)
    with sessions() as session:
        rows = open_callbacks(session, 10)
        assert [row["due_at"] for row in rows] == sorted(row["due_at"] for row in rows)
        assert [row["channel"] for row in rows] == ["web", "wechat", "web"]
        assert len(open_callbacks(session, 2)) == 2


@pytest.mark.parametrize("fields, words", [
    ({"channel": "sms"}, "channel"),
    ({"contact": "  "}, "contact"),
    ({"contact": "x" * 129}, "contact"),
    ({"phone": "打给我"}, "联系电话"),
    ({"phone": "12"}, "联系电话"),
    ({"conversation": [{"who": "robot", "text": "hi"}]}, "conversation"),
    ({"conversation": ["转人工"]}, "conversation"),
])
def test_bad_requests_are_refused_with_a_reason(sessions, fields, words):
    given = {"channel": "web", "contact": "web:visitor-4", "phone": None, "reason": None, "conversation": [],
             "order_no": None} | fields
    with transaction(sessions) as session, pytest.raises(CallbackInvalid, match=words):
        request_callback(session, now=beijing(12, 7, 10), **given)


def test_an_unknown_order_number_from_a_citizen_is_dropped(sessions):
    with transaction(sessions) as session:
        task, _ = request_callback(session, channel="web", contact="web:visitor-5", phone="１３８１２３４５６７８",
                                   reason=None, conversation=[], order_no="CS2099", now=beijing(12, 7, 10))
        assert task.order_no is None and task.phone == "13812345678"
