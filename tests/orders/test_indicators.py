"""Every indicator against figures computed by hand on a small week of orders (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from api.auth.keys import create_api_key
from hotline.core.db import transaction
from orders import indicators as ind
from orders.service import Actor, apply_action, create_order

SYSTEM = Actor("dispatch-system", "system")
UTC = dt.UTC


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
    act(a, "accept", at(16, 9, 30))
    act(a, "dispatch", at(16, 10), department_code="430104-CHENGGUAN", mode="auto")
    act(a, "sign", at(16, 11))
    act(a, "complete", at(16, 20), result="已清理")
    act(a, "approve", at(17, 9))
    act(a, "rate", at(17, 10), satisfaction="满意")
    # B: 岳麓, wechat; returned with fault by 城管 (router wrong), re-dispatched to the street; 57 h of 72 h (按时); 不满意.
    b = new("望月湖小区门口摆摊", "wechat", at(16, 9, 30), "13800000002",
            _routing("430104-CHENGGUAN", "suggest", STALLS, "430104", 3))
    act(b, "accept", at(16, 10))
    act(b, "dispatch", at(16, 11, 30), department_code="430104-CHENGGUAN", mode="manual")
    act(b, "return", at(16, 12), reason="属街道职责", at_fault=True)
    act(b, "dispatch", at(16, 13), department_code="430104001", mode="manual")
    act(b, "sign", at(16, 14))
    act(b, "complete", at(18, 22), result="已劝离")
    act(b, "approve", at(19, 9))
    act(b, "rate", at(19, 10), satisfaction="不满意")
    # C: 雨花, hotline; 5-day limit = 168 h; done after 152.5 h (临期); 基本满意; router right.
    c = new("雨花区饭店油烟", "hotline", at(17, 9), "13800000003", _routing("430111-SHENGTAI", "suggest", SMOKE, "430111", 5))
    act(c, "accept", at(17, 9, 10))
    act(c, "dispatch", at(17, 9, 30), department_code="430111-SHENGTAI", mode="manual")
    act(c, "sign", at(17, 10))
    act(c, "complete", at(23, 18), result="已整改")
    act(c, "approve", at(24, 9))
    act(c, "rate", at(24, 10), satisfaction="基本满意")
    # D: 雨花, web, auto, 1-day limit, still open at Friday noon: 49.5 h of 24 h (严重超期).
    d = new("雨花区井盖丢了", "web", at(18, 10), limit=1, district="430111")
    act(d, "accept", at(18, 10, 10))
    act(d, "dispatch", at(18, 10, 30), department_code="430111-CHENGGUAN", mode="auto")
    act(d, "sign", at(18, 11))
    # E: 岳麓, hotline, open and on time.
    e = new("岳麓区路灯不亮", "hotline", at(19, 9), limit=3, district="430104")
    act(e, "accept", at(19, 9, 5))
    act(e, "dispatch", at(19, 9, 10), department_code="430104-CHENGGUAN", mode="manual")
    # F: the caller of A again, rejected.
    f = new("再问一下摊贩的事", "hotline", at(19, 10), "13800000001")
    act(f, "reject", at(19, 10, 30), reason="重复工单")
    # H: 天心, done, rated 不满意, reopened: open again with a new 2-day deadline ending exactly Friday noon.
    h = new("天心区楼上噪音", "hotline", at(17, 14), "13800000004", limit=2, district="430103")
    act(h, "accept", at(17, 14, 10))
    act(h, "dispatch", at(17, 14, 30), department_code="430103005", mode="manual")
    act(h, "sign", at(17, 15))
    act(h, "complete", at(18, 10), result="已调解")
    act(h, "approve", at(18, 11))
    act(h, "rate", at(18, 11, 30), satisfaction="不满意")
    act(h, "reopen", at(18, 12), reason="还是吵")
    # G: the week before (outside the scope).
    new("上周的投诉", "hotline", at(10, 9))
    return factory


def test_volume_and_rankings(week):
    with week() as session:
        assert ind.order_count(session, WEEK).value == 7                                    # A B C D E F H
        assert ind.ranking(session, WEEK, "channel").breakdown == {"hotline": 5, "wechat": 1, "web": 1}
        assert ind.ranking(session, WEEK, "district").breakdown == {"430104": 3, "430111": 2, "430103": 1, "未知": 1}
        # 诉求类型, read from each text at intake: F ("再问一下摊贩的事") asks; the others complain.
        assert ind.ranking(session, WEEK, "request_type").breakdown == {"投诉": 6, "咨询": 1}
        assert ind.order_count(session, ind.Scope(WEEK.start, WEEK.end, district_adcode="430104")).value == 3
        assert ind.order_count(session, ind.Scope(WEEK.start, WEEK.end, category_prefix="城市管理")).value == 2
        compared = ind.with_previous(ind.order_count, session, WEEK)
        assert (compared["current"].value, compared["previous"].value, compared["change"]) == (7, 1, 6.0)
        with pytest.raises(ValueError):
            ind.ranking(session, WEEK, "colour")


def test_a_ranking_compares_each_group_with_the_previous_period_and_ranks_by_matter_detail(week):
    """"各渠道工单数和上周比" in one question: each group with last week's value and the change (G came by hotline);
    细类 (category3) is a dimension of its own."""
    with week() as session:
        ranked = ind.by_dimension(session, WEEK, measure="order_count", dimension="channel", compare=True)
        hotline = ranked.breakdown["hotline"]
        assert (hotline["value"], hotline["previous"], hotline["change"]) == (5, 1, 4.0)
        assert (ranked.breakdown["web"]["previous"], ranked.breakdown["web"]["change"]) == (0, None)   # no base: no %
        assert list(ranked.breakdown) == ["hotline", "web", "wechat"] and "上一周期" in ranked.definition
        plain = ind.by_dimension(session, WEEK, measure="order_count", dimension="channel")
        assert "previous" not in plain.breakdown["hotline"]
        detail = ind.by_dimension(session, WEEK, measure="order_count", dimension="category3")
        assert detail.breakdown["城市管理/市容秩序/流动摊贩占道经营"]["value"] == 2                          # A and B


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
        unhappy = ind.dissatisfaction_rate(session, WEEK)                                    # B, on the same base
        assert (unhappy.numerator, unhappy.denominator, unhappy.value) == (1, 3, round(1 / 3, 4))
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


# -- rankings of any measure by a dimension --------------------------------------------------------------------
def test_rates_by_district_are_the_same_measure_per_group(week):
    with week() as session:
        ranked = ind.by_dimension(session, WEEK, measure="completion_rate", dimension="district", order="asc",
                                  min_denominator=1)
        # 办结率: 天心 H 0/1, 雨花 C of C D 1/2, 岳麓 A B of A B E 2/3; F (no district) is rejected anyway.
        assert list(ranked.breakdown) == ["430103", "430111", "430104"]
        assert [(g["numerator"], g["denominator"], g["value"]) for g in ranked.breakdown.values()] == [
            (0, 1, 0.0), (1, 2, 0.5), (2, 3, round(2 / 3, 4))]
        assert (ranked.value, ranked.numerator, ranked.denominator) == (0.5, 3, 6)    # the overall figure, unchanged
        assert sum(g["numerator"] for g in ranked.breakdown.values()) == ranked.numerator
        best = ind.by_dimension(session, WEEK, measure="completion_rate", dimension="district", order="desc", top=1,
                                min_denominator=2)
        assert list(best.breakdown) == ["430104"] and "分母少于2件" in best.definition and "本期1个" in best.definition


def test_the_minimum_denominator_keeps_one_order_from_topping_a_ranking(week):
    with week() as session:
        # 平均处置时长 by district: 岳麓 A 10 h and B 58.5 h; 雨花 only C, 152.5 h.
        both = ind.by_dimension(session, WEEK, measure="average_handling_hours", dimension="district", min_denominator=1)
        assert {k: g["value"] for k, g in both.breakdown.items()} == {"430111": 152.5, "430104": 34.25}
        guarded = ind.by_dimension(session, WEEK, measure="average_handling_hours", dimension="district",
                                   min_denominator=2)
        assert list(guarded.breakdown) == ["430104"]
        assert ind.by_dimension(session, WEEK, measure="average_handling_hours", dimension="district").breakdown == {}


def test_lowest_satisfaction_by_department_with_names(week, tiny_kb, tiny_gazetteer):
    names = ind.Names.from_kb(tiny_kb, tiny_gazetteer)
    with week() as session:
        worst = ind.by_dimension(session, WEEK, measure="satisfaction_rate", dimension="department", order="asc",
                                 top=2, min_denominator=1, names=names)
        # B 不满意 (now held by 望月湖街道), A 满意 (岳麓城管), C 基本满意 (雨花生态环境); H's rating went with its reopening.
        assert list(worst.breakdown) == ["430104001", "430104-CHENGGUAN"]
        assert worst.breakdown["430104001"]["label"] == "望月湖街道办事处"
        assert worst.breakdown["430104-CHENGGUAN"] == {"label": "岳麓区城市管理和综合执法局", "value": 1.0,
                                                       "numerator": 1, "denominator": 1}
        on_time = ind.by_dimension(session, WEEK, measure="on_time_rate", dimension="category1", min_denominator=1)
        assert {k: (g["numerator"], g["denominator"]) for k, g in on_time.breakdown.items()} == {
            "城市管理": (2, 2), "生态环境": (1, 1)}


def test_counts_by_a_dimension_keep_unknowns_and_label_channels(week):
    with week() as session:
        channels = ind.by_dimension(session, WEEK, measure="order_count", dimension="channel")
        assert [(k, g["label"], g["value"]) for k, g in channels.breakdown.items()] == [
            ("hotline", "12345热线", 5), ("web", "网站", 1), ("wechat", "微信公众号", 1)]
        categories = ind.by_dimension(session, WEEK, measure="order_count", dimension="category2")
        assert {k: g["value"] for k, g in categories.breakdown.items()} == {
            "未知": 4, "城市管理/市容秩序": 2, "生态环境/大气污染": 1}
        assert ind.ranking(session, WEEK, "category1").breakdown == {"未知": 4, "城市管理": 2, "生态环境": 1}
        late = ind.by_dimension(session, WEEK, measure="overdue_count", dimension="district", now=NOW)
        assert late.value == 1 and late.breakdown["430111"]["value"] == 1    # D


@pytest.mark.parametrize("kwargs, words", [
    ({"measure": "return_ranking", "dimension": "district"}, "cannot be ranked"),
    ({"measure": "happiness", "dimension": "district"}, "cannot be ranked"),
    ({"measure": "completion_rate", "dimension": "colour"}, "dimension"),
    ({"measure": "completion_rate", "dimension": "district", "order": "up"}, "order"),
])
def test_bad_ranking_requests_are_refused(week, kwargs, words):
    with week() as session, pytest.raises(ValueError, match=words):
        ind.by_dimension(session, WEEK, **kwargs)


# -- hot topics, hot areas, alerts on a small made-up city ---------------------------------------------------------
WANGYUEHU, JUZIZHOU, GAOQIAO = "430104001", "430104003", "430111007"
NOISE = ["生态环境", "噪声污染", "邻里生活噪声"]


def _placed(category, district, street=None, community=None, tags=(), limit=3) -> dict:
    return {"decision": "suggest", "confidence": 0.8, "department": {"code": f"{district}-CHENGGUAN"},
            "kb_item": {"id": "KB-X"}, "category": category, "time_limit_days": limit, "tags": list(tags),
            "address": {"district": {"adcode": district}, "street": {"id": street} if street else None,
                        "community": community}, "candidates": []}


@pytest.fixture
def new_order(factory):  # noqa: F811
    def new(text, created, routing=None, phone=None):
        with transaction(factory) as session:
            order, _ = create_order(session, text=text, channel="hotline", actor=SYSTEM, routing=routing,
                                    caller_phone=phone, now=created)
            return order.id, order.order_no
    return new


STALL_TEXTS = ["望月湖街道桃子湖路晚上好多摊贩占道摆摊卖烧烤，人都过不去！",
               "桃子湖路晚上摊贩占道摆摊卖烧烤，烟熏火燎😡",
               "投诉：桃子湖路夜里摊贩占道摆摊卖烧烤，电话13812345678",
               "Hi，桃子湖路的摊贩占道摆摊卖烧烤 again，太吵了"]
NOISE_TEXTS = ["高桥街道某小区楼上邻居每天半夜跺脚拖椅子，吵得睡不着",
               "楼上邻居半夜跺脚拖椅子，吵得睡不着觉",
               "楼上邻居每天半夜拖椅子跺脚，吵得人睡不着"]


def test_hot_topics_group_similar_complaints(new_order, factory, tiny_kb, tiny_gazetteer, base_router):
    stalls = [new_order(t, at(16 + i, 21), _placed(STALLS, "430104", WANGYUEHU if i < 3 else JUZIZHOU))
              for i, t in enumerate(STALL_TEXTS)]
    noises = [new_order(t, at(18, 9 + i), _placed(NOISE, "430111", GAOQIAO)) for i, t in enumerate(NOISE_TEXTS)]
    new_order("岳麓区路灯不亮了，晚上黑漆漆的", at(19, 20), _placed(["城市管理", "市政设施", "路灯"], "430104"))
    new_order("😡" * 3 + "！！！", at(19, 21))                                 # no words at all
    new_order("关于小区物业管理的详细情况说明，" * 60, at(19, 22))                # long, and about something else
    new_order("上周的摊贩占道摆摊卖烧烤", at(12, 21))                          # before the period
    names = ind.Names.from_kb(tiny_kb, tiny_gazetteer)
    with factory() as session:
        topics = ind.hot_topics(session, WEEK, names=names, segmenter=base_router.segmenter)   # knows 桃子湖路
        again = ind.hot_topics(session, WEEK, names=names, segmenter=base_router.segmenter)
    assert topics == again                                                    # deterministic
    assert (topics.value, topics.numerator, topics.denominator) == (2, 7, 10)
    first, second = topics.breakdown["topics"]
    assert first["size"] == 4 and set(first["order_nos"]) <= {no for _, no in stalls} and len(first["order_nos"]) == 3
    assert set(first["terms"]) == {"摊贩", "占道", "烧烤", "摆摊", "桃子湖路"} and first["category"] == "/".join(STALLS)
    assert first["districts"] == [{"code": "430104", "name": "岳麓区", "count": 4}]
    assert first["streets"] == [{"code": WANGYUEHU, "name": "望月湖街道", "count": 3},
                                {"code": JUZIZHOU, "name": "桔子洲街道", "count": 1}]
    assert "13812345678" not in str(topics)                                  # masked text only
    assert second["size"] == 3 and set(second["order_nos"]) == {no for _, no in noises}
    assert second["streets"] == [{"code": GAOQIAO, "name": "高桥街道", "count": 3}]
    with factory() as session:
        assert ind.hot_topics(session, WEEK, similarity=1.0).value == 0
        assert ind.hot_topics(session, WEEK, min_size=5).value == 0
        assert ind.hot_topics(session, ind.Scope(at(1, 0), at(2, 0))).breakdown == {"topics": []}


def test_hot_areas_need_volume_and_a_rise(new_order, factory, tiny_kb, tiny_gazetteer):
    smoke = ["生态环境", "大气污染", "餐饮油烟"]
    for day in (10, 11):                                                      # the week before: 2 in 望月湖, 4 in 高桥
        new_order("桃子湖路摊贩", at(day, 10), _placed(STALLS, "430104", WANGYUEHU))
    for day in (9, 10, 11, 12):
        new_order("高桥油烟", at(day, 10), _placed(smoke, "430111", GAOQIAO))
    for i in range(5):                                                        # this week: 5 (4 in 望月湖社区) vs 2
        new_order(f"望月湖第{i}件", at(16 + i, 10), _placed(STALLS if i < 3 else smoke, "430104", WANGYUEHU,
                                                         "望月湖社区" if i else None))
    for i in range(5):                                                        # 5 vs 4: not 1.5 times
        new_order(f"高桥第{i}件", at(16 + i, 11), _placed(smoke, "430111", GAOQIAO))
    for i in range(3):                                                        # 3 vs 0: too few
        new_order(f"桔子洲第{i}件", at(17 + i, 11), _placed(STALLS, "430104", JUZIZHOU))
    names = ind.Names.from_kb(tiny_kb, tiny_gazetteer)
    with factory() as session:
        hot = ind.hot_areas(session, WEEK, min_count=4, names=names)
        relaxed = ind.hot_areas(session, WEEK, min_count=3, growth=1.2, names=names)
    assert hot.value == 2 and hot.denominator == 4                            # 3 streets and 1 community had orders
    street, community = hot.breakdown["areas"]
    assert street == {"level": "street", "street_id": WANGYUEHU, "street": "望月湖街道", "community": None,
                      "district": "430104", "district_name": "岳麓区", "count": 5, "previous": 2, "ratio": 2.5,
                      "categories": {"城市管理/市容秩序": 3, "生态环境/大气污染": 2}}
    assert (community["level"], community["community"], community["count"], community["previous"], community["ratio"]) \
        == ("community", "望月湖社区", 4, 0, None)
    assert [(a["street_id"], a["community"]) for a in relaxed.breakdown["areas"]] == [
        (WANGYUEHU, None), (GAOQIAO, None), (WANGYUEHU, "望月湖社区"), (JUZIZHOU, None)]    # 5/2, 5/4 = 1.25, 4/0, 3/0


def test_alerts_long_unresolved_surges_and_sensitive(new_order, factory, tiny_kb, tiny_gazetteer):
    def act(order_id, action, when, **data):
        with transaction(factory) as session:
            apply_action(session, order_id=order_id, action=action, actor=SYSTEM, now=when, **data)

    smoke = ["生态环境", "大气污染", "餐饮油烟"]
    # L1: 1-day limit from Mon 09:00 → due Tue 09:00; at Mon 23 12:00 it is 4 working days late (严重超期) → 高.
    late, late_no = new_order("岳麓区井盖丢了", at(16, 8), _placed(["城市管理", "市政设施", "井盖"], "430104", limit=1))
    act(late, "accept", at(16, 8, 30))
    act(late, "dispatch", at(16, 9), department_code="430104-CHENGGUAN")
    # L2: due Wed 09:00 → exactly 3 working days late: not more than 3, no alert.
    edge, _ = new_order("雨花区路灯不亮", at(17, 8), _placed(["城市管理", "市政设施", "路灯"], "430111", limit=1))
    act(edge, "accept", at(17, 8, 30))
    act(edge, "dispatch", at(17, 9), department_code="430111-CHENGGUAN")
    # A surge in 高桥: four 餐饮油烟 orders and one unclassified near-copy within 23 h; a sixth 3 days later.
    surge = [new_order(text, at(day, hour), _placed(smoke, "430111", GAOQIAO, "高桥社区") if i < 4 else
                       {"address": {"district": {"adcode": "430111"}, "street": {"id": GAOQIAO},
                                    "community": "高桥社区"}})
             for i, (text, day, hour) in enumerate([
                 ("高桥大市场烧烤店油烟直排，熏得家里窗户都不敢开", 18, 8), ("市场旁饭店油烟好大", 18, 10),
                 ("餐馆排烟管道对着我家窗户", 18, 14), ("夜宵店油烟污染严重", 18, 20),
                 ("高桥大市场旁边烧烤店油烟直排，熏得窗户都不敢开", 19, 7)])]
    new_order("高桥又有油烟", at(21, 10), _placed(smoke, "430111", GAOQIAO))
    for i in range(4):                                                        # 4 stalls in 2 h: below 5
        new_order(f"桃子湖路摊贩占道{i}", at(18, 20 + i // 2), _placed(STALLS, "430104", WANGYUEHU))
    threat, threat_no = new_order("再不解决我就从楼上跳下去，不想活了", at(20, 9), _placed(NOISE, "430103", tags=["扬言"]))
    petition, petition_no = new_order("明天就去市政府门口上访", at(20, 10), _placed(NOISE, "430103", tags=["信访"]))
    media, _ = new_order("已经发到抖音上了", at(17, 10), _placed(NOISE, "430103", tags=["舆情"]))
    act(media, "accept", at(17, 11))
    act(media, "reject", at(17, 12), reason="重复工单")       # closed: no alert

    names = ind.Names.from_kb(tiny_kb, tiny_gazetteer)
    now = at(23, 12)
    with factory() as session:
        found = ind.alerts(session, WEEK, now=now, names=names)
        strict = ind.alerts(session, WEEK, now=now, cluster_hours=12, open_days=5)
    alerts = found.breakdown["alerts"]
    assert [(a["kind"], a["severity"]) for a in alerts] == [("敏感诉求", "高"), ("久而未决", "高"), ("敏感诉求", "中"),
                                                            ("群体高发", "中")]
    assert alerts[0]["order_nos"] == [threat_no] and "扬言" in alerts[0]["reason"]
    assert alerts[1]["order_nos"] == [late_no] and "4个工作日" in alerts[1]["reason"]
    assert alerts[2]["order_nos"] == [petition_no] and "信访" in alerts[2]["reason"]
    assert alerts[3]["order_nos"] == [no for _, no in surge]
    assert "高桥街道高桥社区" in alerts[3]["reason"] and "5件" in alerts[3]["reason"]
    assert found.value == 4 and found.breakdown["by_kind"] == {"敏感诉求": 2, "久而未决": 1, "群体高发": 1}
    assert "3个工作日" in found.definition and "24小时" in found.definition
    # 12-hour windows hold at most 4 of the surge; open_days=5 adds every open order registered before 18th 12:00.
    kinds = Counter(a["kind"] for a in strict.breakdown["alerts"])
    assert kinds["群体高发"] == 0 and kinds["久而未决"] == 4                 # L1, L2 and the surge's 08:00 and 10:00
    assert {a["order_nos"][0] for a in strict.breakdown["alerts"] if a["kind"] == "久而未决"} >= {late_no, surge[0][1]}
    with pytest.raises(ValueError):
        ind.alerts(session, WEEK, cluster_size=1)


# -- names → codes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, value, extra, code", [
    ("district", "岳麓区", {}, "430104"), ("district", "430104", {}, "430104"), ("district", "长沙市雨花区", {}, "430111"),
    ("district", "河西", {}, "430104"), ("district", "岳麓", {}, "430104"),
    ("street", "望月湖街道", {}, WANGYUEHU), ("street", "望月湖", {}, WANGYUEHU), ("street", "岳麓区桔子洲街道", {}, JUZIZHOU),
    ("street", "高桥", {"district": "430111"}, GAOQIAO),
    ("department", "岳麓区城市管理和综合执法局", {}, "430104-CHENGGUAN"), ("department", "城管局", {}, "CS-CHENGGUAN"),
    ("department", "岳麓区城管局", {}, "430104-CHENGGUAN"), ("department", "城管", {"district": "430111"}, "430111-CHENGGUAN"),
    ("department", "雨花区生态环境局", {}, "430111-SHENGTAI"), ("department", "望月湖街道", {}, WANGYUEHU),
    ("department", "430104-ZHUJIAN", {}, "430104-ZHUJIAN"), ("department", "自来水公司", {}, "CS-WATER"),
])
def test_names_resolve_to_codes(tiny_kb, tiny_gazetteer, kind, value, extra, code):
    resolve = {"district": ind.resolve_district, "street": ind.resolve_street, "department": ind.resolve_department}[kind]
    kwargs = {"gazetteer": tiny_gazetteer, **extra} | ({"kb": tiny_kb} if kind == "department" else {})
    assert resolve(value, **kwargs) == code


@pytest.mark.parametrize("kind, value, words", [
    ("district", "火星区", "不认识的区县"), ("street", "高桥街道", "不认识"), ("street", "不存在的街道", "不认识"),
    ("department", "宇宙管理局", "不认识的单位"), ("district", "", "不认识"),
])
def test_unknown_names_are_refused_with_a_reason(tiny_kb, tiny_gazetteer, kind, value, words):
    resolve = {"district": ind.resolve_district, "street": ind.resolve_street, "department": ind.resolve_department}[kind]
    kwargs = {"gazetteer": tiny_gazetteer} | ({"kb": tiny_kb} if kind == "department" else {})
    if kind == "street" and value == "高桥街道":
        kwargs["district"] = "430104"                                         # 高桥 is in 雨花区, not 岳麓区
    with pytest.raises(ind.UnknownName, match=words):
        resolve(value, **kwargs)


# -- the HTTP API (names in, labels out) on SQLite and PostgreSQL ------------------------------------------------
@pytest.fixture
def cockpit(app_and_keys, client):  # noqa: F811
    """The API client with a key allowed to read indicators, over the app's own database, plus a few orders."""
    _, _, app_factory = app_and_keys
    with transaction(app_factory) as session:
        key = create_api_key(session, name="cockpit", scopes=["indicators:read"])[1]

    def new(text, created, routing, channel="hotline", **steps):
        with transaction(app_factory) as session:
            order, _ = create_order(session, text=text, channel=channel, actor=SYSTEM, routing=routing, now=created)
            for action, when, data in steps.get("steps", []):
                apply_action(session, order_id=order.id, action=action, actor=SYSTEM, now=when, **data)
            return order.order_no

    done = [("accept", at(16, 10), {}), ("dispatch", at(16, 11), {"department_code": "430104-CHENGGUAN"}),
            ("sign", at(16, 12), {}), ("complete", at(17, 12), {"result": "已处理"}), ("approve", at(17, 13), {})]
    for i, text in enumerate(STALL_TEXTS):                                  # 岳麓: 4 stalls, 3 of them done
        new(text, at(16, 9 + i), _placed(STALLS, "430104", WANGYUEHU), steps=done if i < 3 else [])
    for i, text in enumerate(NOISE_TEXTS):                                  # 雨花: 3 noise complaints, open, by WeChat
        new(text, at(18, 9 + i), _placed(NOISE, "430111", GAOQIAO), channel="wechat")
    new("我要去市政府门口上访！", at(19, 9), _placed(NOISE, "430111", GAOQIAO, tags=["信访"]))
    client.headers["X-API-Key"] = key
    return client


PERIOD = {"start": "2026-11-16", "end": "2026-11-23"}


def test_api_ranks_a_rate_by_a_dimension_with_labels(cockpit):
    ranked = cockpit.get("/api/v1/indicators/completion_rate",
                         params=PERIOD | {"by": "district", "order": "asc", "top": 3, "min_denominator": 1})
    assert ranked.status_code == 200, ranked.text
    body = ranked.json()
    assert [(k, g["label"], g["numerator"], g["denominator"]) for k, g in body["breakdown"].items()] == [
        ("430111", "雨花区", 0, 4), ("430104", "岳麓区", 3, 4)]
    assert (body["numerator"], body["denominator"]) == (3, 8) and "不参与排名" in body["definition"]
    guarded = cockpit.get("/api/v1/indicators/completion_rate", params=PERIOD | {"by": "district", "min_denominator": 5})
    assert guarded.json()["breakdown"] == {}
    compared = cockpit.get("/api/v1/indicators/order_count", params=PERIOD | {"by": "district", "compare": True}).json()
    assert {k: (g["value"], g["previous"]) for k, g in compared["breakdown"].items()} == {
        "430104": (4, 0), "430111": (4, 0)}
    assert compared["value"] == 8 and compared["previous"] == {"value": 0, "change": None}
    member = cockpit.get("/api/v1/indicators/on_time_rate", params=PERIOD)
    assert member.json()["name"] == "按时办结率" and member.json()["denominator"] == 3


def test_the_key_figures_are_each_indicators_own_number_in_one_answer(cockpit):
    """The cockpit's key figures: one call, each the number GET /{name} gives, with 环比 and 同比."""
    answer = cockpit.get("/api/v1/indicators/figures", params=PERIOD | {"compare": True, "year_before": True})
    assert answer.status_code == 200, answer.text
    figures = answer.json()["figures"]
    assert set(figures) == {"order_count", "completion_rate", "on_time_rate", "satisfaction_rate", "overdue_count",
                            "average_handling_hours"}
    for name, figure in figures.items():
        alone = cockpit.get(f"/api/v1/indicators/{name}", params=PERIOD | {"compare": True}).json()
        assert figure["value"] == alone["current"]["value"] and figure["previous"]["value"] == alone["previous"]["value"]
        earlier = cockpit.get(f"/api/v1/indicators/{name}", params={"start": "2025-11-16", "end": "2025-11-23"}).json()
        assert figure["year_before"]["value"] == earlier["value"], name
    assert figures["order_count"]["value"] == 8 and figures["order_count"]["year_before"] == {"value": 0, "change": None}
    plain = cockpit.get("/api/v1/indicators/figures", params=PERIOD | {"measures": "order_count"}).json()["figures"]
    assert plain == {"order_count": {"name": "工单数", "value": 8, "numerator": None, "denominator": None,
                                     "definition": plain["order_count"]["definition"], "breakdown": {}}}
    assert cockpit.get("/api/v1/indicators/figures", params=PERIOD | {"measures": "alerts"}).status_code == 422


def test_the_unit_table_is_each_indicators_ranking_in_one_answer(cockpit):
    """The cockpit's 承办单位考核 table: one call, and every cell equals the indicator ranked by unit on its own."""
    table = cockpit.get("/api/v1/indicators/table", params=PERIOD)
    assert table.status_code == 200, table.text
    body = table.json()
    assert set(body["measures"]) == {"order_count", "completion_rate", "on_time_rate", "overdue_count",
                                     "dissatisfaction_rate"} and body["measures"]["dissatisfaction_rate"]["label"] == "不满意率"
    assert body["rows"], body
    for name in body["measures"]:
        ranked = cockpit.get(f"/api/v1/indicators/{name}", params=PERIOD | {"by": "department", "top": 500,
                                                                            "min_denominator": 1}).json()["breakdown"]
        for code, row in body["rows"].items():
            if code in ranked:
                assert row[name]["value"] == ranked[code]["value"], (name, code)
    row = body["rows"]["430104-CHENGGUAN"]
    assert row["label"] == "岳麓区城市管理和综合执法局" and row["returns"] == {"退单": 0, "有责退单": 0}
    assert row["completion_rate"]["numerator"] == 3 and row["order_count"]["value"] == 3
    assert cockpit.get("/api/v1/indicators/table", params=PERIOD | {"measures": "on_time_rates"}).status_code == 422
    assert cockpit.get("/api/v1/indicators/table", params=PERIOD | {"by": "colour"}).status_code == 422
    assert cockpit.get("/api/v1/indicators/table", params=PERIOD | {"measures": " , "}).status_code == 422


@pytest.mark.parametrize("filters, count, resolved", [
    ({"district": "岳麓区"}, 4, {"district": "430104"}),
    ({"district": "河西"}, 4, {"district": "430104"}),
    ({"street": "高桥", "district": "雨花区"}, 4, {"street": GAOQIAO}),
    ({"department": "岳麓区城管局"}, 3, {"department": "430104-CHENGGUAN"}),
    ({"channel": "微信公众号"}, 3, {"channel": "wechat"}),
    ({"category": "城市管理"}, 4, {"category": "城市管理"}),
    ({"district": " 430111 "}, 4, {"district": "430111"}),
    ({"district": "４３０１０４"}, 4, {"district": "430104"}),                  # full-width digits
    ({"district": "", "street": "  "}, 8, {"district": None, "street": None}),
])
def test_api_accepts_names_as_well_as_codes(cockpit, filters, count, resolved):
    response = cockpit.get("/api/v1/indicators/order_count", params=PERIOD | filters)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == count
    assert response.json()["scope"].items() >= resolved.items()


@pytest.mark.parametrize("path, params, status, words", [
    ("order_count", {"district": "火星区"}, 422, "不认识的区县"),
    ("order_count", {"street": "高桥街道", "district": "岳麓区"}, 422, "不认识的街道"),
    ("order_count", {"department": "宇宙管理局"}, 422, "不认识的单位"),
    ("order_count", {"category": "外星事务"}, 422, "事项分类"),
    ("order_count", {"channel": "carrier pigeon 🕊"}, 422, "channel"),
    ("completion_rate", {"by": "colour"}, 422, "dimension"),
    ("on_time_rates", {"by": "district"}, 422, "on_time_rate"),
    ("return_ranking", {"by": "district"}, 422, "cannot be ranked"),
    ("completion_rate", {"by": "district", "order": "sideways"}, 422, ""),
    ("happiness_index", {"by": "district"}, 404, "unknown indicator"),
    ("order_count", {"district": "岳" * 200}, 422, ""),
])
def test_api_refuses_bad_requests_with_a_reason(cockpit, path, params, status, words):
    response = cockpit.get(f"/api/v1/indicators/{path}", params=PERIOD | params)
    assert response.status_code == status and words in str(response.json()["detail"])


def test_api_lists_every_indicator_with_its_label(cockpit):
    listed = cockpit.get("/api/v1/indicators").json()
    by_name = {i["name"]: i for i in listed["indicators"]}
    assert by_name["completion_rate"] == {"name": "completion_rate", "label": "办结率", "unit": "比例", "kind": "rate",
                                          "definition": ind.CATALOGUE["completion_rate"].definition,
                                          "supports_by": True, "higher_is_better": True, "group": None,
                                          "words": list(ind.CATALOGUE["completion_rate"].words),
                                          "ambiguous": ["完成率", "办结情况"]}
    assert by_name["on_time_rate"]["group"] == "on_time_rates" and by_name["reopen_rate"]["higher_is_better"] is False
    assert by_name["alerts"]["supports_by"] is False and by_name["hot_topics"]["label"] == "热点诉求"
    assert all(i["label"] and i["definition"] and i["unit"] for i in listed["indicators"])
    assert {"name": "department", "label": "承办单位"} in listed["dimensions"]
    assert {"name": "wechat", "label": "微信公众号"} in listed["channels"]


def test_api_hot_topics_areas_and_alerts(cockpit):
    topics = cockpit.get("/api/v1/indicators/hot_topics", params=PERIOD | {"similarity": 0.3}).json()
    assert [t["size"] for t in topics["breakdown"]["topics"]] == [4, 3]
    assert topics["breakdown"]["topics"][0]["streets"][0]["name"] == "望月湖街道"
    areas = cockpit.get("/api/v1/indicators/hot_areas", params=PERIOD | {"min_count": 4}).json()
    assert [(a["street"], a["count"], a["previous"]) for a in areas["breakdown"]["areas"]] == [
        ("望月湖街道", 4, 0), ("高桥街道", 4, 0)]
    alerts = cockpit.get("/api/v1/indicators/alerts", params=PERIOD | {"district": "雨花区", "cluster_size": 4}).json()
    assert [(a["kind"], a["severity"]) for a in alerts["breakdown"]["alerts"]] == [("敏感诉求", "中"), ("群体高发", "中")]
    assert alerts["breakdown"]["alerts"][1]["street"] == "高桥街道"
    assert cockpit.get("/api/v1/indicators/alerts", params=PERIOD | {"cluster_size": 1}).status_code == 422


def test_api_needs_the_indicators_permission(cockpit):
    assert cockpit.get("/api/v1/indicators/alerts", params=PERIOD, headers={"X-API-Key": cockpit.keys["reader"]}) \
        .status_code == 403
    del cockpit.headers["X-API-Key"]
    assert cockpit.get("/api/v1/indicators/hot_topics", params=PERIOD).status_code == 401


def test_api_takes_codes_but_not_names_while_the_knowledge_base_loads(cockpit, app_and_keys):
    app = app_and_keys[0]
    loaded, app.state.router = app.state.router, None
    try:
        by_code = cockpit.get("/api/v1/indicators/order_count", params=PERIOD | {"district": "430104"})
        assert by_code.status_code == 200 and by_code.json()["value"] == 4
        by_name = cockpit.get("/api/v1/indicators/order_count", params=PERIOD | {"district": "岳麓区"})
        assert by_name.status_code == 503 and "loading" in by_name.json()["detail"]
    finally:
        app.state.router = loaded


def test_a_hot_topic_reads_as_a_place_and_a_phrase_from_its_own_text():
    from orders.indicators.topics import topic_label

    places = ("岳麓区", "望月湖街道", "雨花区", "高桥街道", "芙蓉区", "定王台街道")
    assert topic_label("来电人反映：岳麓区望月湖街道望月湖小区门口路灯不亮，已经一周了😡，晚上出行不安全。",
                       ["路灯", "不亮", "晚上"], "望月湖街道", places) == "望月湖街道 路灯不亮"
    assert topic_label("书记您好！我是雨花区高桥街道某小区的业主，小区垃圾站好几天没人清运，臭气熏天！！",
                       ["垃圾站", "清运"], "高桥街道", places).startswith("高桥街道 ")
    spread = topic_label("市民反映芙蓉区定王台街道菜市场周边占道经营严重，早上车都开不过去", ["占道"], None, places)
    assert spread == "菜市场周边占道经营严重"             # no single place: the phrase alone
    assert topic_label("", ["噪音", "施工"], "东塘街道") == "东塘街道 噪音、施工"   # no clause: the topic's words
    # The clause holding most of the topic's words, not the first one that holds any ("其家庭户籍人口6人").
    water = topic_label("岳麓区咸嘉湖街道，来电人反映：其家庭户籍人口6人，申请阶梯水价人口核增未获办理，诉求：告知办理流程。",
                        ["人口", "核增", "阶梯水价", "未获", "家庭"], "咸嘉湖街道", places + ("咸嘉湖街道",))
    assert water == "咸嘉湖街道 申请阶梯水价人口核增未获办理"
    # A long clause ends after the last topic word that fits, not in the middle of one.
    assert topic_label("浏阳市某工业园内一家化工企业近期排放的废气有刺激性气味", ["化工企业", "废气", "排放"], None,
                       ("浏阳市",)) == "工业园内一家化工企业近期排放"


def test_api_names_the_units_of_the_return_ranking(cockpit, app_and_keys):
    """The assistant read out unit codes for 退单 (review 2026-12-06, feature 15): the API gives each unit's name."""
    _, _, app_factory = app_and_keys
    with transaction(app_factory) as session:
        order, _ = create_order(session, text="岳麓区望月湖街道门口垃圾堆了一周没人管", channel="hotline", actor=SYSTEM,
                                routing=None, now=at(17, 9))
        for action, data in (("accept", {}), ("dispatch", {"department_code": "430104-CHENGGUAN"}),
                             ("return", {"reason": "非本单位职责", "at_fault": False})):
            apply_action(session, order_id=order.id, action=action, actor=SYSTEM, now=at(17, 10), **data)
    ranked = cockpit.get("/api/v1/indicators/return_ranking", params=PERIOD).json()
    assert ranked["breakdown"]["430104-CHENGGUAN"]["label"] == "岳麓区城市管理和综合执法局"
