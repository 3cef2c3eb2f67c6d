"""Every indicator against figures computed by hand on a small week of orders (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt

import pytest

from hotline.db import transaction
from orders import indicators as ind
from orders.service import Actor, apply_action, create_order
from test_orders import engine, factory  # noqa: F401  (the same SQLite/PostgreSQL fixtures)

SYSTEM = Actor("dispatch-system", "system")
UTC = dt.timezone.utc


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)   # 16 = Monday


WEEK = ind.Scope(at(16, 0), at(23, 0))
NOW = at(20, 12)                                                  # Friday noon


def _routing(dept: str, decision: str, category: list[str], district: str, limit: int) -> dict:
    return {"decision": decision, "confidence": 0.9, "department": {"code": dept}, "kb_item": {"id": "KB-X"},
            "category": category, "time_limit_days": limit, "address": {"district": {"adcode": district}},
            "candidates": []}


STALLS = ["城市管理", "市容秩序", "流动摊贩占道经营"]
SMOKE = ["生态环境", "大气污染", "餐饮油烟"]


@pytest.fixture
def week(factory):  # noqa: F811
    def new(text, channel, created, phone=None, routing=None, limit=None, district=None):
        with transaction(factory) as session:
            order, _ = create_order(session, text=text, channel=channel, actor=SYSTEM, caller_phone=phone,
                                    routing=routing, now=created)
            if routing is None and (limit or district):
                order.time_limit_days, order.district_adcode = limit, district
            return order.id

    def act(order_id, action, when, **data):
        with transaction(factory) as session:
            apply_action(session, order_id=order_id, action=action, actor=SYSTEM, now=when, **data)

    # A: 岳麓, hotline, auto-dispatched, done in 10 h of a 72 h limit (提前), 满意; router right.
    a = new("岳麓区桃子湖路摊贩占道", "hotline", at(16, 9), "13800000001",
            _routing("430104-CHENGGUAN", "auto", STALLS, "430104", 3))
    act(a, "accept", at(16, 9, 30)); act(a, "dispatch", at(16, 10), department_code="430104-CHENGGUAN", mode="auto")
    act(a, "sign", at(16, 11)); act(a, "complete", at(16, 20), result="已清理"); act(a, "approve", at(17, 9))
    act(a, "rate", at(17, 10), satisfaction="满意")
    # B: 岳麓, wechat; returned with fault by 城管 (router wrong), re-dispatched to the street; 57 h of 72 h (按时); 不满意.
    b = new("望月湖小区门口摆摊", "wechat", at(16, 9, 30), "13800000002",
            _routing("430104-CHENGGUAN", "suggest", STALLS, "430104", 3))
    act(b, "accept", at(16, 10)); act(b, "dispatch", at(16, 11, 30), department_code="430104-CHENGGUAN", mode="manual")
    act(b, "return", at(16, 12), reason="属街道职责", at_fault=True)
    act(b, "dispatch", at(16, 13), department_code="430104001", mode="manual"); act(b, "sign", at(16, 14))
    act(b, "complete", at(18, 22), result="已劝离"); act(b, "approve", at(19, 9)); act(b, "rate", at(19, 10), satisfaction="不满意")
    # C: 雨花, hotline; 5-day limit = 168 h; done after 152.5 h (临期); 基本满意; router right.
    c = new("雨花区饭店油烟", "hotline", at(17, 9), "13800000003", _routing("430111-SHENGTAI", "suggest", SMOKE, "430111", 5))
    act(c, "accept", at(17, 9, 10)); act(c, "dispatch", at(17, 9, 30), department_code="430111-SHENGTAI", mode="manual")
    act(c, "sign", at(17, 10)); act(c, "complete", at(23, 18), result="已整改"); act(c, "approve", at(24, 9))
    act(c, "rate", at(24, 10), satisfaction="基本满意")
    # D: 雨花, web, auto, 1-day limit, still open at Friday noon: 49.5 h of 24 h (严重超期).
    d = new("雨花区井盖丢了", "web", at(18, 10), limit=1, district="430111")
    act(d, "accept", at(18, 10, 10)); act(d, "dispatch", at(18, 10, 30), department_code="430111-CHENGGUAN", mode="auto")
    act(d, "sign", at(18, 11))
    # E: 岳麓, hotline, open and on time.
    e = new("岳麓区路灯不亮", "hotline", at(19, 9), limit=3, district="430104")
    act(e, "accept", at(19, 9, 5)); act(e, "dispatch", at(19, 9, 10), department_code="430104-CHENGGUAN", mode="manual")
    # F: the caller of A again, rejected.
    f = new("再问一下摊贩的事", "hotline", at(19, 10), "13800000001")
    act(f, "reject", at(19, 10, 30), reason="重复工单")
    # H: 天心, done, rated 不满意, reopened: open again with a new 2-day deadline ending exactly Friday noon.
    h = new("天心区楼上噪音", "hotline", at(17, 14), "13800000004", limit=2, district="430103")
    act(h, "accept", at(17, 14, 10)); act(h, "dispatch", at(17, 14, 30), department_code="430103005", mode="manual")
    act(h, "sign", at(17, 15)); act(h, "complete", at(18, 10), result="已调解"); act(h, "approve", at(18, 11))
    act(h, "rate", at(18, 11, 30), satisfaction="不满意"); act(h, "reopen", at(18, 12), reason="还是吵")
    # G: the week before (outside the scope).
    new("上周的投诉", "hotline", at(10, 9))
    return factory


def test_volume_and_rankings(week):
    with week() as session:
        assert ind.order_count(session, WEEK).value == 7                                    # A B C D E F H
        assert ind.ranking(session, WEEK, "channel").breakdown == {"hotline": 5, "wechat": 1, "web": 1}
        assert ind.ranking(session, WEEK, "district").breakdown == {"430104": 3, "430111": 2, "430103": 1, "未知": 1}
        assert ind.order_count(session, ind.Scope(WEEK.start, WEEK.end, district_adcode="430104")).value == 3
        assert ind.order_count(session, ind.Scope(WEEK.start, WEEK.end, category_prefix="城市管理")).value == 2
        compared = ind.with_previous(ind.order_count, session, WEEK)
        assert (compared["current"].value, compared["previous"].value, compared["change"]) == (7, 1, 6.0)
        with pytest.raises(ValueError):
            ind.ranking(session, WEEK, "colour")


def test_completion_and_timeliness(week):
    with week() as session:
        done = ind.completion_rate(session, WEEK)
        assert (done.numerator, done.denominator, done.value) == (3, 6, 0.5)                 # A B C of A B C D E H
        rates = ind.on_time_rates(session, WEEK)
        assert rates["按时办结率"].value == 1.0 and rates["按时办结率"].denominator == 3       # H was reopened
        assert rates["提前办结率"].value == round(1 / 3, 4) and rates["临期办结率"].value == round(1 / 3, 4)
        assert rates["按时办结率"].breakdown == {"提前办结": 1, "按时办结": 1, "临期办结": 1}
        late = ind.overdue(session, WEEK, now=NOW)
        assert late["超期件数"].value == 1 and late["严重超期件数"].value == 1                # D; H is exactly due


def test_durations(week):
    with week() as session:
        handling = ind.average_handling_hours(session, WEEK)
        assert handling.denominator == 3 and handling.value == round((10 + 58.5 + 152.5) / 3, 2)
        dispatch = ind.average_dispatch_minutes(session, WEEK)
        assert dispatch.denominator == 6 and dispatch.value == round((60 + 120 + 30 + 30 + 10 + 30) / 6, 1)


def test_citizen_side(week):
    with week() as session:
        happy = ind.satisfaction_rate(session, WEEK)
        assert (happy.numerator, happy.denominator) == (2, 3) and happy.value == round(2 / 3, 4)
        again = ind.reopen_rate(session, WEEK)
        assert (again.numerator, again.denominator, again.value) == (1, 4, 0.25)
        assert ind.repeat_requests(session, WEEK).value == 1                                 # F after A


def test_dispatch_quality(week):
    with week() as session:
        returns = ind.return_ranking(session, WEEK)
        assert returns.value == 1 and returns.breakdown == {"430104-CHENGGUAN": {"退单": 1, "有责退单": 1}}
        accuracy = ind.dispatch_accuracy(session, WEEK)
        assert (accuracy.numerator, accuracy.denominator) == (2, 3)                          # A right, B wrong, C right
        assert accuracy.breakdown["智能（自动派单）"]["准确率"] == 1.0
        assert accuracy.breakdown["人机联动（坐席确认）"] == {"准确": 1, "总数": 2, "准确率": 0.5}
        automatic = ind.auto_dispatch_rate(session, WEEK)
        assert (automatic.numerator, automatic.denominator) == (2, 6)                        # A and D
