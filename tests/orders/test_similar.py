"""Same-event detection (orders/similar.py) and merging (orders/merge.py), on SQLite and PostgreSQL, with the
FakeEmbedder test double (texts sharing words and places score alike; e5's figures are in BENCHMARKS.md)."""
from __future__ import annotations

import datetime as dt

import pytest

from hotline.core.db import transaction
from nlp.embedder import FakeEmbedder
from orders.indicators.measures import completion_rate, on_time_rates, order_count
from orders.indicators.scope import Scope
from orders.intake import file_complaint
from orders.merge import MergeInvalid, MergeRefused, handling_order, handling_result, link_orders, merge_order
from orders.models import MERGED_ROLE, OrderEmbedding, WorkOrder
from orders.service import Actor, Forbidden, apply_action
from orders.similar import Place, find_similar, place_agreement, similar_to_order

EMBEDDER = FakeEmbedder(dim=256)
MODEL = EMBEDDER.model_id
AGENT = Actor("agent-li", "agent")
DISPATCHER = Actor("dispatcher-wang", "dispatcher")
WATER = "CS-WATER"
START = dt.datetime(2026, 12, 7, 0, 10, tzinfo=dt.UTC)   # 08:10 in 长沙

# 雨花区 高桥街道 新天村社区, and 岳麓区 望月湖街道 for the same words elsewhere.
XINTIAN = Place("430111", "430111005", "新天村社区")
WANGYUEHU = Place("430104", "430104001", "望月湖社区")

# Six callers, one outage, three channels: long and short, angry, a title first, a second matter, emoji.
OUTAGE = [
    ("hotline", "停水问题：雨花区高桥街道新天村社区一带从今天早上七点开始停水，到现在还没来水，也没看到任何停水通知！！"
                "家里老人小孩都等着用水，做饭洗澡都没办法，请尽快处理。"),
    ("wechat", "我是高桥街道新天村的住户，新天村今天一整天都停水，打自来水公司电话一直占线😡😡，到底什么时候恢复供水？"),
    ("web", "【紧急】新天村社区全片停水快十个小时了，物业说是主管破裂在抢修，但一直没有人给个准话，附近好几栋楼都没水，"
            "希望有关部门督促一下。"),
    ("hotline", "你好，反映一下，雨花区高桥街道新天村这边停水了，早上到现在，麻烦问问什么时候来水。"),
    ("wechat", "投诉！！！新天村停水一天了，没有提前通知，小孩发烧要用水都没有，你们12345到底管不管？"
               "再不来水我就找媒体曝光。另外小区门口的路灯也坏了好几天了。"),
    ("web", "新天村社区停水，请供水公司尽快抢修新天村的供水管道，并安排送水车。"),
]
NOISE_SAME_PLACE = "雨花区高桥街道新天村社区旁边的工地每天晚上十二点以后还在施工，噪音太大了，吵得人睡不着觉。"


def embed(texts):
    return EMBEDDER.embed_queries(list(texts))


def file(session, text: str, *, place: Place = XINTIAN, channel: str = "hotline", at: dt.datetime = START,
         vector: bool = True, phone: str | None = None) -> WorkOrder:
    routing = {"decision": "suggest", "confidence": 0.5, "candidates": [],
               "address": {"district": {"adcode": place.district_adcode}, "street": {"id": place.street_id},
                           "community": place.community}}
    order, _ = file_complaint(session, text=text, channel=channel, actor=AGENT, routing=routing, routing_model=None,
                              auto_dispatch=False, caller_phone=phone, now=at,
                              text_vector=embed([text])[0] if vector else None, vector_model=MODEL)
    return order


def proposals(session, order: WorkOrder, **kwargs) -> list[str]:
    return [hit.order_no for hit in similar_to_order(session, order=order, model_id=MODEL, embed=embed, **kwargs)]


def test_six_callers_about_one_outage_across_channels_are_proposed_and_a_neighbouring_matter_is_not(factory):
    with transaction(factory) as session:
        callers = []
        for i, (channel, text) in enumerate(OUTAGE):
            if i == 3:
                noise = file(session, NOISE_SAME_PLACE, at=START + dt.timedelta(minutes=50))
            callers.append(file(session, text, channel=channel, at=START + dt.timedelta(minutes=20 * i)))
        numbers = {o.order_no for o in callers}
        assert {o.channel for o in callers} == {"hotline", "wechat", "web"}
        for later in callers[1:]:
            hits = similar_to_order(session, order=later, model_id=MODEL, embed=embed)
            assert hits, later.text
            assert hits[0].order_no in numbers and noise.order_no not in {h.order_no for h in hits}
            assert "同一社区" in hits[0].reason and "文本相似度" in hits[0].reason and "小时内" in hits[0].reason
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert not set(proposals(session, noise)) & numbers
        # At intake time (before the later callers), the first caller is what the second is shown.
        second = callers[1]
        at_intake = find_similar(session, vector=embed([second.text])[0], model_id=MODEL, place=XINTIAN,
                                 at=second.created_at, exclude_order_id=second.id)
        assert [h.order_no for h in at_intake] == [callers[0].order_no]


def test_the_same_words_in_another_district_are_another_event(factory):
    with transaction(factory) as session:
        here = file(session, OUTAGE[0][1])
        text_there = OUTAGE[0][1].replace("雨花区高桥街道新天村社区", "岳麓区望月湖街道望月湖社区")
        there = file(session, text_there, place=WANGYUEHU, at=START + dt.timedelta(minutes=5))
        assert proposals(session, there) == [] and proposals(session, here) == []
        # Where the router found no place, the words alone decide.
        unknown = file(session, OUTAGE[0][1], place=Place(), at=START + dt.timedelta(minutes=6))
        assert here.order_no in proposals(session, unknown)
        # A search from a known district reads only that district's orders and those of no known district...
        assert proposals(session, here) == [unknown.order_no]
        # ...unless its threshold is low enough for another district's order to reach it.
        assert there.order_no in proposals(session, here, threshold=0.0)
    assert place_agreement(XINTIAN, WANGYUEHU)[1] == "不同区县"
    assert place_agreement(XINTIAN, Place("430111", "430111009", None))[1] == "同区不同街道"


def test_old_closed_and_merged_orders_are_not_candidates(factory):
    with transaction(factory) as session:
        old = file(session, OUTAGE[0][1], at=START - dt.timedelta(days=8))
        closed = file(session, OUTAGE[1][1], at=START - dt.timedelta(hours=2))
        apply_action(session, order_id=closed.id, action="reject", actor=AGENT, reason="重复来电，已告知")
        handling = file(session, OUTAGE[3][1], at=START - dt.timedelta(hours=1))
        merged = file(session, OUTAGE[5][1], at=START - dt.timedelta(minutes=30))
        merge_order(session, order=merged, into=handling, actor=AGENT)
        new = file(session, OUTAGE[0][1], at=START)
        assert proposals(session, new) == [handling.order_no]
        assert set(proposals(session, new, window_days=10)) == {handling.order_no, old.order_no}
        # A merged caller's own search does not offer the order it already belongs to.
        assert handling.order_no not in proposals(session, merged)


def test_an_order_filed_without_a_vector_is_embedded_once_when_a_search_meets_it(factory):
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return embed(texts)

    with transaction(factory) as session:
        first = file(session, OUTAGE[0][1], vector=False)
        second = file(session, OUTAGE[3][1], at=START + dt.timedelta(minutes=30))
        assert session.query(OrderEmbedding).filter_by(order_id=first.id).count() == 0
        hits = similar_to_order(session, order=second, model_id=MODEL, embed=counting)
        assert [h.order_no for h in hits] == [first.order_no] and calls == [[first.text]]
        similar_to_order(session, order=second, model_id=MODEL, embed=counting)
        assert len(calls) == 1   # stored: not embedded again
        assert session.query(OrderEmbedding).filter_by(order_id=first.id, model_id=MODEL).count() == 1


# -- merging -------------------------------------------------------------------------------------------------
def _dispatch(session, order, department=WATER, co=None):
    apply_action(session, order_id=order.id, action="accept", actor=DISPATCHER)
    apply_action(session, order_id=order.id, action="dispatch", actor=DISPATCHER, department_code=department,
                 co_handlers=co or [])


def test_merged_callers_follow_the_handling_order_to_its_result(factory):
    with transaction(factory) as session:
        handling = file(session, OUTAGE[0][1], phone="13800001111")
        callers = [file(session, text, channel=channel, at=START + dt.timedelta(minutes=10 * i), phone=f"1390000{i:04d}")
                   for i, (channel, text) in enumerate(OUTAGE[1:], start=1)]
        _dispatch(session, handling)
        for caller in callers:
            merge_order(session, order=caller, into=handling, actor=AGENT, reason="同一停水事件")
        assert all(c.parent_id == handling.id and c.role == MERGED_ROLE for c in callers)
        assert all(c.state == "dispatched" and c.department_code == WATER for c in callers)
        assert callers[0].events[-1].action == "merge" and callers[0].events[-1].data == {"into": handling.order_no}
        merged_in = [e for e in handling.events if e.action == "merge_in"]
        assert len(merged_in) == 5 and merged_in[0].actor == AGENT.name and merged_in[0].comment == "同一停水事件"
        handler = Actor("water-zhang", "handler", WATER)
        apply_action(session, order_id=handling.id, action="sign", actor=handler)
        apply_action(session, order_id=handling.id, action="complete", actor=handler,
                     result="主管破裂已抢修完毕，18:30恢复供水")   # merged callers do not hold the lead back
        assert {c.state for c in callers} == {"completed"} and handling_result(callers[0]) is None
        apply_action(session, order_id=handling.id, action="approve", actor=DISPATCHER)
        assert {c.state for c in callers} == {"closed"}
        assert handling_order(callers[2]) is handling
        assert handling_result(callers[2]) == "主管破裂已抢修完毕，18:30恢复供水"


def test_merge_rules(factory):
    with transaction(factory) as session:
        a = file(session, OUTAGE[0][1])
        b = file(session, OUTAGE[1][1], at=START + dt.timedelta(minutes=5))
        c = file(session, OUTAGE[2][1], at=START + dt.timedelta(minutes=6))
        with pytest.raises(MergeInvalid, match="它自己"):
            merge_order(session, order=a, into=a, actor=AGENT)
        with pytest.raises(Forbidden):
            merge_order(session, order=b, into=a, actor=Actor("water-zhang", "handler", WATER))
        with pytest.raises(Forbidden):
            merge_order(session, order=b, into=a, actor=Actor("leader", "official"))
        merge_order(session, order=b, into=a, actor=AGENT)
        with pytest.raises(MergeRefused, match="不是主办工单"):
            merge_order(session, order=a, into=b, actor=AGENT)      # into its own child
        with pytest.raises(MergeRefused, match="不是主办工单"):
            merge_order(session, order=c, into=b, actor=AGENT)
        with pytest.raises(MergeRefused, match="已合并到"):
            merge_order(session, order=b, into=c, actor=AGENT)
        closed = file(session, OUTAGE[3][1], at=START + dt.timedelta(minutes=7))
        apply_action(session, order_id=closed.id, action="reject", actor=AGENT, reason="非本市事项")
        with pytest.raises(MergeRefused, match="不予受理"):
            merge_order(session, order=c, into=closed, actor=AGENT)
        # Another unit already signed c: its work is not taken from it silently.
        _dispatch(session, c, department="430111005")
        apply_action(session, order_id=c.id, action="sign", actor=Actor("street", "handler", "430111005"))
        with pytest.raises(MergeRefused, match="已由 430111005"):
            merge_order(session, order=c, into=a, actor=AGENT)
        lead = file(session, OUTAGE[4][1], at=START + dt.timedelta(minutes=8))
        _dispatch(session, lead, co=["430111-CHENGGUAN"])
        with pytest.raises(MergeRefused, match="牵头工单"):
            merge_order(session, order=lead, into=a, actor=AGENT)
        # A handling order merged elsewhere takes its callers with it.
        d = file(session, OUTAGE[5][1], at=START + dt.timedelta(minutes=9))
        merge_order(session, order=a, into=d, actor=DISPATCHER)
        assert a.parent_id == d.id and b.parent_id == d.id and b.role == MERGED_ROLE


def test_co_handlers_are_numbered_and_waited_for_apart_from_merged_callers(factory):
    with transaction(factory) as session:
        lead = file(session, OUTAGE[0][1])
        caller = file(session, OUTAGE[1][1], at=START + dt.timedelta(minutes=5))
        merge_order(session, order=caller, into=lead, actor=AGENT)
        _dispatch(session, lead, co=["430111-CHENGGUAN"])
        co = [c for c in lead.children if c.role == "co"]
        assert [c.order_no for c in co] == [f"{lead.order_no}-1"]
        handler = Actor("water-zhang", "handler", WATER)
        apply_action(session, order_id=lead.id, action="sign", actor=handler)
        with pytest.raises(Exception, match="协办工单尚未办结"):
            apply_action(session, order_id=lead.id, action="complete", actor=handler, result="已恢复供水")


def test_link_records_both_sides_and_changes_no_state(factory):
    with transaction(factory) as session:
        a = file(session, OUTAGE[0][1])
        b = file(session, NOISE_SAME_PLACE, at=START + dt.timedelta(minutes=3))
        link_orders(session, order=a, other=b, actor=AGENT, reason="同一社区")
        assert (a.state, b.state, a.parent_id, b.parent_id) == ("received", "received", None, None)
        assert a.events[-1].data == {"linked": b.order_no} and b.events[-1].data == {"linked": a.order_no}
        with pytest.raises(MergeInvalid):
            link_orders(session, order=a, other=a, actor=AGENT)


def test_indicators_count_every_caller_once_and_the_handling_once(factory):
    with transaction(factory) as session:
        handling = file(session, OUTAGE[0][1])
        callers = [file(session, text, channel=channel, at=START + dt.timedelta(minutes=i))
                   for i, (channel, text) in enumerate(OUTAGE[1:], 1)]
        other = file(session, NOISE_SAME_PLACE, at=START + dt.timedelta(minutes=30))
        for caller in callers:
            merge_order(session, order=caller, into=handling, actor=AGENT)
        for order in (handling, other):
            _dispatch(session, order)
            handler = Actor("water-zhang", "handler", WATER)
            apply_action(session, order_id=order.id, action="sign", actor=handler)
        apply_action(session, order_id=handling.id, action="complete", actor=handler, result="已恢复供水")
        apply_action(session, order_id=handling.id, action="approve", actor=DISPATCHER)
    scope = Scope(START - dt.timedelta(days=1), START + dt.timedelta(days=1))
    with factory() as session:
        assert order_count(session, scope).value == 7            # six callers and the noise complaint
        completion = completion_rate(session, scope)
        assert (completion.numerator, completion.denominator) == (1, 2)   # the outage handled once, the noise open
        assert on_time_rates(session, scope)["按时办结率"].denominator == 1
        assert order_count(session, Scope(START - dt.timedelta(days=1), START + dt.timedelta(days=1),
                                          channel="wechat")).value == 2


def test_one_search_embeds_a_bounded_number_of_unembedded_orders_newest_first(factory, monkeypatch):
    import orders.similar

    monkeypatch.setattr(orders.similar, "MAX_EMBEDDED_PER_SEARCH", 1)
    with transaction(factory) as session:
        older = file(session, OUTAGE[1][1], vector=False)
        newer = file(session, OUTAGE[0][1], vector=False, at=START + dt.timedelta(minutes=10))
        new = file(session, OUTAGE[3][1], at=START + dt.timedelta(minutes=20))
        assert proposals(session, new) == [newer.order_no]
        assert session.query(OrderEmbedding).filter_by(order_id=older.id).count() == 0
        assert set(proposals(session, new)) == {newer.order_no, older.order_no}   # the next search goes on


def test_a_remembered_vector_never_answers_for_another_order_with_the_same_id(factory):
    """Stored vectors are kept in memory between searches; an id handed out again (here: the rows removed, as after
    a rolled-back insert) belongs to an order with another number or time, whose own vector is read instead."""
    from sqlalchemy import delete

    from orders.models import OrderEvent, RoutingDecision

    with transaction(factory) as session:
        first = file(session, OUTAGE[0][1])
        first_id = first.id
    with transaction(factory) as session:   # remembers the first order's vector
        assert [h.order_no for h in find_similar(session, vector=embed([OUTAGE[0][1]])[0], model_id=MODEL,
                                                 place=XINTIAN, at=START + dt.timedelta(hours=1))]
    with transaction(factory) as session:
        for table in (OrderEmbedding, OrderEvent, RoutingDecision):
            session.execute(delete(table).where(table.order_id == first_id))
        session.execute(delete(WorkOrder).where(WorkOrder.id == first_id))
    with transaction(factory) as session:
        other = file(session, NOISE_SAME_PLACE, at=START + dt.timedelta(minutes=7))
        reused = other.id == first_id
    with transaction(factory) as session:
        hits = find_similar(session, vector=embed([OUTAGE[0][1]])[0], model_id=MODEL, place=XINTIAN,
                            at=START + dt.timedelta(hours=1))
    # The noise complaint is not about the outage: with the outage's remembered vector it would be proposed.
    assert hits == [] and (reused or factory.kw["bind"].dialect.name == "postgresql")


def test_a_vector_remembered_at_intake_is_not_read_back_and_proposals_are_loaded_in_one_query(factory):
    """The intake remembers the vector it has just committed, so the next search reads no stored vector for that
    order; the proposed orders come with their merged callers in one query, not one query per proposal."""
    from sqlalchemy import event

    from orders.similar import remember_vector

    with transaction(factory) as session:
        filed = [file(session, text, at=START + dt.timedelta(minutes=i)) for i, (_, text) in enumerate(OUTAGE[:3])]
    with factory() as session:
        remember_vector(session, order=filed[0], vector=embed([OUTAGE[0][1]])[0], model_id=MODEL)
    engine = factory.kw["bind"]
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with factory() as session:
            hits = find_similar(session, vector=embed([OUTAGE[3][1]])[0], model_id=MODEL, place=XINTIAN,
                                at=START + dt.timedelta(hours=1))
            assert {h.order_no for h in hits} == {o.order_no for o in filed}
            assert all(h.order.children == [] for h in hits)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    vector_reads = [p for s, p in statements if "FROM order_embeddings" in s]
    values = list(vector_reads[0].values()) if isinstance(vector_reads[0], dict) else list(vector_reads[0])
    assert len(vector_reads) == 1 and filed[0].id not in values and filed[1].id in values   # the two others only
    assert sum("parent_id IN" in " ".join(s.split()) for s, _ in statements) == 1   # children of all proposals at once
