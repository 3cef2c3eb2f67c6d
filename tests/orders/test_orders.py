"""Work orders: the lifecycle state machine, deadlines, and the service on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from support import clean_postgres_url

from hotline.core.config import REPO_ROOT
from hotline.core.db import make_engine, session_factory, transaction
from nlp.normalize import InputError
from orders.lifecycle import Action, IllegalTransition, State, add_working_days, next_state, timeliness
from orders.models import RoutingDecision, Supervision, WorkOrder
from orders.service import (
    Actor,
    ConcurrentUpdate,
    Forbidden,
    IdempotencyConflict,
    apply_action,
    create_order,
    get_order,
)

AGENT = Actor("坐席王敏", "agent")
DISPATCHER = Actor("派单员李强", "dispatcher")
HANDLER = Actor("岳麓城管张伟", "handler", "430104-CHENGGUAN")
OTHER_HANDLER = Actor("雨花城管刘洋", "handler", "430111-CHENGGUAN")
SUPERVISOR = Actor("督办科陈静", "supervisor")
MONDAY = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)
COMPLAINT = "岳麓区桃子湖路晚上好多摊贩占道摆摊卖烧烤，人都过不去！来电人电话13812345678"
ROUTING = {"decision": "auto", "confidence": 0.97, "department": {"code": "430104-CHENGGUAN"},
           "kb_item": {"id": "KB-01-009"}, "category": ["城市管理", "市容秩序", "流动摊贩占道经营"],
           "time_limit_days": 3, "urgency": "非紧急", "tags": [], "sentiment": -0.4,
           "address": {"standard_address": "湖南省长沙市岳麓区望月湖街道桃子湖路",
                       "district": {"adcode": "430104"}, "street": {"id": "430104001"}},
           "candidates": [{"department": {"code": "430104-CHENGGUAN"}, "kb_item": {"id": "KB-01-009"}, "score": 0.9}]}


# -- the state machine, no database ------------------------------------------------------------------------
def test_the_happy_path_visits_every_stage_in_order():
    path = [(Action.ACCEPT, {}), (Action.DISPATCH, {"department_code": "X"}), (Action.SIGN, {}),
            (Action.HANDLE, {"note": "已到现场"}), (Action.COMPLETE, {"result": "已清理"}), (Action.APPROVE, {}),
            (Action.RATE, {"satisfaction": "满意"}), (Action.ARCHIVE, {})]
    state, seen = State.RECEIVED, []
    for action, data in path:
        state = next_state(state, action, data)
        seen.append(state)
    assert seen == [State.ACCEPTED, State.DISPATCHED, State.SIGNED, State.HANDLING, State.COMPLETED, State.CLOSED,
                    State.RATED, State.ARCHIVED]


@pytest.mark.parametrize("state, action, data, words", [
    (State.RECEIVED, Action.SIGN, {}, "不能签收"),
    (State.ARCHIVED, Action.REOPEN, {"reason": "不满意"}, "不能重办"),
    (State.CLOSED, Action.COMPLETE, {"result": "x"}, "不能办结"),
    (State.DISPATCHED, Action.RETURN, {"reason": "非本单位职责"}, "at_fault"),          # 有责/无责 must be said
    (State.DISPATCHED, Action.RETURN, {"at_fault": False}, "reason"),
    (State.ACCEPTED, Action.DISPATCH, {}, "department_code"),
    (State.CLOSED, Action.RATE, {"satisfaction": "还行"}, "满意度"),
    (State.HANDLING, Action.EXTEND, {"days": 90, "reason": "等待鉴定"}, "延期天数"),
    (State.SIGNED, Action.SUPERVISE, {"supervision_type": "口头督办"}, "督办类型"),
    (State.ARCHIVED, Action.SUPERVISE, {"supervision_type": "系统督办"}, "不能督办"),
])
def test_illegal_moves_are_refused_with_a_reason(state, action, data, words):
    with pytest.raises(IllegalTransition) as error:
        next_state(state, action, data)
    assert words in error.value.reason


def test_a_return_goes_back_for_redispatch_and_reopen_goes_back_to_dispatched():
    assert next_state(State.SIGNED, Action.RETURN, {"reason": "属交警职责", "at_fault": False}) == State.RETURNED
    assert next_state(State.RETURNED, Action.DISPATCH, {"department_code": "Y"}) == State.DISPATCHED
    assert next_state(State.RATED, Action.REOPEN, {"reason": "问题仍未解决"}) == State.DISPATCHED
    assert next_state(State.COMPLETED, Action.SEND_BACK, {"reason": "照片不清楚"}) == State.HANDLING
    assert next_state(State.HANDLING, Action.EXTEND, {"days": 5, "reason": "需协调"}) == State.HANDLING


def test_working_days_skip_the_weekend():
    friday = dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.UTC)
    assert add_working_days(friday, 1) == dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)   # Monday
    assert add_working_days(MONDAY, 5) == MONDAY + dt.timedelta(days=7)


@pytest.mark.parametrize("hours_used, label", [(10, "提前办结"), (30, "按时办结"), (45, "临期办结"),
                                               (70, "超期办结"), (130, "严重超期办结")])
def test_timeliness_of_finished_orders(hours_used, label):
    deadline = MONDAY + dt.timedelta(hours=50)
    assert timeliness(MONDAY, deadline, finished=MONDAY + dt.timedelta(hours=hours_used)).label == label


@pytest.mark.parametrize("hours, label", [(20, "正常"), (45, "临期"), (60, "超期"), (101, "严重超期")])
def test_timeliness_of_open_orders(hours, label):
    deadline = MONDAY + dt.timedelta(hours=50)
    assert timeliness(MONDAY, deadline, now=MONDAY + dt.timedelta(hours=hours)).label == label


# -- the service, on SQLite and PostgreSQL -----------------------------------------------------------------
def _new_order(factory, **kwargs) -> WorkOrder:
    with transaction(factory) as session:
        order, _ = create_order(session, text=kwargs.pop("text", COMPLAINT), channel=kwargs.pop("channel", "hotline"),
                                actor=AGENT, caller_phone="138 1234 5678", routing=kwargs.pop("routing", ROUTING),
                                now=kwargs.pop("now", MONDAY), **kwargs)
        return order


def _act(factory, order_id, action, actor, now=None, **data) -> WorkOrder:
    with transaction(factory) as session:
        return apply_action(session, order_id=order_id, action=action, actor=actor, now=now, **data)


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def test_migrations_match_the_models(engine):
    config = Config(str(REPO_ROOT / "alembic.ini"))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.check(config)   # raises if the models have changes no migration covers


def test_create_records_the_order_masks_pii_and_stores_the_routing_decision(factory):
    order = _new_order(factory)
    assert order.order_no == f"CS20261116{order.id:06d}"
    with factory() as session:
        stored = get_order(session, order_id=order.id)
        assert stored.state == State.RECEIVED and stored.caller_phone_last4 == "5678"
        assert "13812345678" not in stored.text_masked and "138****5678" in stored.text_masked
        assert (stored.district_adcode, stored.street_id, stored.kb_item_id) == ("430104", "430104001", "KB-01-009")
        assert [(e.seq, e.action, e.actor) for e in stored.events] == [(1, "create", "坐席王敏")]
        decision = session.scalar(select(RoutingDecision).where(RoutingDecision.order_id == order.id))
        assert decision.department_code == "430104-CHENGGUAN" and decision.correct is None


def test_bad_text_is_refused_and_nothing_is_stored(factory):
    with pytest.raises(InputError):
        _new_order(factory, text="   ")
    with pytest.raises(ValueError, match="unknown channel"):
        _new_order(factory, channel="pigeon")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 0


def test_idempotency_key_returns_the_first_order_and_refuses_a_different_body(factory):
    first = _new_order(factory, idempotency_key="wx-msg-001")
    with transaction(factory) as session:
        again, created = create_order(session, text=COMPLAINT, channel="hotline", actor=AGENT,
                                      caller_phone="138 1234 5678", idempotency_key="wx-msg-001", routing=ROUTING)
        assert not created and again.id == first.id
    with pytest.raises(IdempotencyConflict), transaction(factory) as session:
        create_order(session, text="另一件事：路灯坏了", channel="hotline", actor=AGENT, idempotency_key="wx-msg-001")


def test_the_same_key_sent_concurrently_makes_one_order(factory):
    results, errors = [], []

    def submit():
        try:
            with transaction(factory) as session:
                order, created = create_order(session, text=COMPLAINT, channel="wechat", actor=AGENT,
                                              idempotency_key="wx-msg-race")
                results.append((order.id, created))
        except Exception as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({order_id for order_id, _ in results}) == 1 and sum(created for _, created in results) == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 1


def test_concurrent_creations_are_all_kept_with_distinct_numbers(factory):
    errors = []

    def submit(i):
        try:
            _new_order(factory, text=f"第{i}号投诉：小区门口垃圾三天没人收", routing=None)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with factory() as session:
        numbers = session.scalars(select(WorkOrder.order_no)).all()
    assert len(numbers) == 40 and len(set(numbers)) == 40


def test_full_lifecycle_records_every_step_and_marks_the_routing_decision_right(factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    _act(factory, order.id, "dispatch", DISPATCHER, now=MONDAY, department_code="430104-CHENGGUAN", mode="auto")
    _act(factory, order.id, "sign", HANDLER)
    _act(factory, order.id, "handle", HANDLER, note="执法队员已到现场劝离摊贩")
    _act(factory, order.id, "extend_request", HANDLER, days=2, reason="需与街道联合整治")
    _act(factory, order.id, "extend_approve", DISPATCHER)
    _act(factory, order.id, "complete", HANDLER, result="摊贩已清理，设置巡查点")
    _act(factory, order.id, "approve", DISPATCHER)
    _act(factory, order.id, "rate", AGENT, satisfaction="满意")
    done = _act(factory, order.id, "archive", DISPATCHER)
    assert done.state == State.ARCHIVED
    with factory() as session:
        stored = get_order(session, order_id=order.id)
        assert [e.action for e in stored.events] == ["create", "accept", "dispatch", "sign", "handle",
                                                     "extend_request", "extend_approve", "complete", "approve",
                                                     "rate", "archive"]
        assert [e.seq for e in stored.events] == list(range(1, 12))
        handle = stored.events[4]
        assert (handle.actor, handle.actor_role, handle.comment) == ("岳麓城管张伟", "handler", "执法队员已到现场劝离摊贩")
        # 3 working days (the matter's limit) from Monday's dispatch, then extended by 2 more: next Monday.
        assert _utc(stored.deadline_at) == add_working_days(add_working_days(MONDAY, 3), 2) == MONDAY + dt.timedelta(days=7)
        assert stored.satisfaction == "满意" and stored.closed_at is not None
        decision = session.scalar(select(RoutingDecision).where(RoutingDecision.order_id == order.id))
        assert decision.correct is True and decision.final_department_code == "430104-CHENGGUAN"


def test_a_return_marks_the_routing_decision_wrong_and_the_order_can_be_redispatched(factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    _act(factory, order.id, "dispatch", DISPATCHER, department_code="430104-CHENGGUAN")
    returned = _act(factory, order.id, "return", HANDLER, reason="属街道职责", at_fault=False)
    assert returned.state == State.RETURNED and returned.return_count == 1
    again = _act(factory, order.id, "dispatch", DISPATCHER, department_code="430104001")
    assert again.state == State.DISPATCHED and again.department_code == "430104001"
    with factory() as session:
        decision = session.scalar(select(RoutingDecision).where(RoutingDecision.order_id == order.id))
        assert decision.correct is False
        ret = [e for e in get_order(session, order_id=order.id).events if e.action == "return"][0]
        assert ret.comment == "属街道职责" and ret.data == {"at_fault": False}


def test_roles_and_departments_are_enforced(factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    with pytest.raises(Forbidden):
        _act(factory, order.id, "sign", AGENT)                # an agent cannot sign for a department
    _act(factory, order.id, "dispatch", DISPATCHER, department_code="430104-CHENGGUAN")
    with pytest.raises(Forbidden, match="not held by your department"):
        _act(factory, order.id, "sign", OTHER_HANDLER)
    with pytest.raises(IllegalTransition):
        _act(factory, order.id, "complete", HANDLER, result="x")   # must sign first
    with factory() as session:
        assert get_order(session, order_id=order.id).state == State.DISPATCHED


def test_a_stale_update_is_refused_and_no_step_is_lost(engine, factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    # Each clerk's read ends its transaction (as a web request does); the loaded order stays in hand.
    first, second = Session(engine, expire_on_commit=False), Session(engine, expire_on_commit=False)
    try:
        b = get_order(second, order_id=order.id)   # the second clerk opened the order first …
        version_seen = b.version
        second.commit()
        a = apply_action(first, order_id=order.id, action="dispatch", actor=DISPATCHER, department_code="430104-CHENGGUAN")
        first.commit()                             # … and the first clerk's dispatch landed before theirs
        with pytest.raises(ConcurrentUpdate):
            apply_action(second, order_id=order.id, action="reject", actor=DISPATCHER, reason="重复工单",
                         expected_version=version_seen)
        second.rollback()
        assert a.state == State.DISPATCHED
    finally:
        first.close()
        second.close()
    with factory() as session:
        stored = get_order(session, order_id=order.id)
        assert stored.state == State.DISPATCHED and [e.action for e in stored.events] == ["create", "accept", "dispatch"]


def test_racing_writers_without_a_version_hint_still_lose_nothing(engine, factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    first, second = Session(engine, expire_on_commit=False), Session(engine, expire_on_commit=False)
    try:
        # Both clerks hold the order they loaded (the session's identity map keeps only held objects).
        held_by_first = get_order(first, order_id=order.id)
        first.commit()
        held_by_second = get_order(second, order_id=order.id)
        second.commit()
        assert held_by_first.version == held_by_second.version
        apply_action(first, order_id=order.id, action="supervise", actor=SUPERVISOR, supervision_type="系统督办")
        first.commit()
        with pytest.raises(ConcurrentUpdate):   # the version column catches it at flush time
            apply_action(second, order_id=order.id, action="supervise", actor=SUPERVISOR, supervision_type="书面督办")
        second.rollback()
    finally:
        first.close()
        second.close()
    with factory() as session:
        assert [e.action for e in get_order(session, order_id=order.id).events] == ["create", "accept", "supervise"]
        assert session.scalar(select(func.count()).select_from(Supervision)) == 1


def test_dispatch_with_co_handlers_creates_child_orders(factory):
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    lead = _act(factory, order.id, "dispatch", DISPATCHER, department_code="430104-CHENGGUAN",
                co_handlers=["430104001", "430104-SHICHANG"])
    with factory() as session:
        stored = get_order(session, order_id=lead.id)
        assert stored.role == "lead"
        children = sorted(stored.children, key=lambda c: c.order_no)
        assert [c.department_code for c in children] == ["430104001", "430104-SHICHANG"]
        assert all(c.role == "co" and c.state == State.DISPATCHED and c.order_no.startswith(stored.order_no + "-")
                   for c in children)
        assert children[0].events[0].comment == f"协办，牵头工单 {stored.order_no}"


def test_reopen_after_an_unhappy_rating(factory):
    order = _new_order(factory)
    for action, actor, data in [("accept", AGENT, {}), ("dispatch", DISPATCHER, {"department_code": "430104-CHENGGUAN"}),
                                ("sign", HANDLER, {}), ("complete", HANDLER, {"result": "已处理"}),
                                ("approve", DISPATCHER, {}), ("rate", AGENT, {"satisfaction": "不满意"})]:
        _act(factory, order.id, action, actor, **data)
    reopened = _act(factory, order.id, "reopen", AGENT, reason="摊贩第二天又回来了")
    assert reopened.state == State.DISPATCHED and reopened.reopen_count == 1
    assert reopened.satisfaction is None and reopened.closed_at is None


# -- review 2026-12-06 (issue 11): extensions need the centre's approval; a lead closes after its co-handlers ----
def _handling(factory, **dispatch) -> WorkOrder:
    order = _new_order(factory)
    _act(factory, order.id, "accept", AGENT)
    _act(factory, order.id, "dispatch", DISPATCHER, now=MONDAY, department_code="430104-CHENGGUAN", **dispatch)
    _act(factory, order.id, "sign", HANDLER)
    return _act(factory, order.id, "handle", HANDLER, note="已到现场")


def test_a_handler_cannot_move_its_own_deadline_only_ask_for_more_time(factory):
    order = _handling(factory)
    deadline = order.deadline_at
    with pytest.raises(Forbidden, match="extend_request"):
        _act(factory, order.id, "extend", HANDLER, days=10, reason="需协调")
    asked = _act(factory, order.id, "extend_request", HANDLER, days=2, reason="需与街道联合整治")
    assert asked.deadline_at == deadline and asked.state == State.HANDLING
    with pytest.raises(IllegalTransition, match="待审批"):   # one request at a time
        _act(factory, order.id, "extend_request", HANDLER, days=5, reason="再加几天")
    with pytest.raises(Forbidden):                           # the department cannot approve itself
        _act(factory, order.id, "extend_approve", HANDLER)
    with pytest.raises(Forbidden):
        _act(factory, order.id, "extend_approve", AGENT)
    granted = _act(factory, order.id, "extend_approve", SUPERVISOR)
    assert _utc(granted.deadline_at) == add_working_days(_utc(deadline), 2)
    assert granted.events[-1].data == {"days": 2}
    with pytest.raises(IllegalTransition, match="没有待审批的延期申请"):
        _act(factory, order.id, "extend_approve", DISPATCHER)


def test_a_refused_extension_leaves_the_deadline(factory):
    order = _handling(factory)
    _act(factory, order.id, "extend_request", HANDLER, days=3, reason="等待鉴定")
    with pytest.raises(IllegalTransition, match="reason"):
        _act(factory, order.id, "extend_refuse", DISPATCHER)
    refused = _act(factory, order.id, "extend_refuse", DISPATCHER, reason="可先行处置")
    assert refused.deadline_at == order.deadline_at
    with pytest.raises(IllegalTransition, match="没有待审批"):
        _act(factory, order.id, "extend_approve", DISPATCHER)


def test_a_lead_order_waits_for_its_co_handlers(factory):
    lead = _handling(factory, co_handlers=["430104001", "430104-SHICHANG"])
    with factory() as session:
        children = sorted(get_order(session, order_id=lead.id).children, key=lambda c: c.order_no)
        child_ids, child_nos = [c.id for c in children], [c.order_no for c in children]
    with pytest.raises(IllegalTransition) as refused:
        _act(factory, lead.id, "complete", HANDLER, result="已清理")
    assert "协办工单尚未办结" in refused.value.reason and all(no in refused.value.reason for no in child_nos)
    street = Actor("望月湖街道", "handler", "430104001")
    market = Actor("岳麓市场监管", "handler", "430104-SHICHANG")
    for child_id, actor in zip(child_ids, (street, market)):
        _act(factory, child_id, "sign", actor)
        _act(factory, child_id, "complete", actor, result="已配合处置")
    done = _act(factory, lead.id, "complete", HANDLER, result="已清理")     # every co-handler has reported
    assert done.state == State.COMPLETED
    _act(factory, child_ids[0], "approve", DISPATCHER)
    with pytest.raises(IllegalTransition) as refused:                      # one co-handler still under review
        _act(factory, lead.id, "approve", DISPATCHER)
    assert child_nos[1] in refused.value.reason and child_nos[0] not in refused.value.reason
    with factory() as session:
        assert get_order(session, order_id=lead.id).state == State.COMPLETED
    _act(factory, child_ids[1], "approve", DISPATCHER)
    assert _act(factory, lead.id, "approve", DISPATCHER).state == State.CLOSED


def test_a_110_matter_is_stored_urgent_and_flagged_for_the_agent(factory):
    knife = {**ROUTING, "decision": "review", "urgency": "非紧急", "diversion": "110", "tags": []}
    order = _new_order(factory, text="岳麓区望月湖街道有人在小区门口持刀打人，快派人来", routing=knife)
    assert order.urgency == "紧急" and "转110" in order.tags
    plain = _new_order(factory, routing={**ROUTING, "diversion": None})
    assert plain.urgency == "非紧急" and plain.tags == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0008_moves_the_stored_idempotency_keys_into_their_senders_scope(backend, tmp_path):
    """Review 2026-12-06, L12: keys are scoped per sender from 0008 on; the keys stored before are rewritten into
    their sender's scope (from the order's create event), so a retry that spans the upgrade still finds its order."""
    from sqlalchemy import update

    from orders.service import WECHAT_SCOPE, find_by_idempotency_key

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}" if backend == "sqlite" else clean_postgres_url()
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    command.upgrade(config, "0007")
    engine = make_engine(url)
    factory = session_factory(engine)
    senders = [("call-20261205-0001", Actor("dispatch-system", "system"), "hotline", "key:dispatch-system"),
               ("agent-retry-7", AGENT, "hotline", "staff:坐席王敏"),
               ("msg:24680135792468013579", Actor("wechat", "system"), "wechat", WECHAT_SCOPE),
               ("msg:13579246801357924680", Actor("assistant", "system"), "wechat", WECHAT_SCOPE)]
    ids = {}
    # Today's ORM also writes request_type (0012): lend the column while writing the 0007-era rows.
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE work_orders ADD COLUMN request_type VARCHAR(8)"))
    for key, actor, channel, _ in senders:   # as 0007 stored them: the key as sent
        with transaction(factory) as session:
            order, _ = create_order(session, text=COMPLAINT, channel=channel, actor=actor, now=MONDAY)
            session.execute(update(WorkOrder).where(WorkOrder.id == order.id).values(idempotency_key=key))
            ids[key] = order.id
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE work_orders DROP COLUMN request_type"))
    engine.dispose()
    command.upgrade(config, "head")
    engine = make_engine(url)
    factory = session_factory(engine)
    with factory() as session:   # 0012 read each stored order's type from its text
        assert {o.request_type for o in session.scalars(select(WorkOrder))} == {"投诉"}
    with factory() as session:
        for key, _actor, _channel, scope in senders:
            assert find_by_idempotency_key(session, key=key, scope=scope).id == ids[key], key
            assert find_by_idempotency_key(session, key=key, scope="key:someone-else") is None
    with transaction(factory) as session:   # the dispatch system's retry after the upgrade: its first order
        again, created = create_order(session, text=COMPLAINT, channel="hotline", actor=senders[0][1], now=MONDAY,
                                      idempotency_key=senders[0][0], idempotency_scope="key:dispatch-system")
        assert not created and again.id == ids[senders[0][0]]
    engine.dispose()


def test_an_order_read_with_its_steps_takes_one_query_and_reads_need_no_transaction(factory):
    """A staff screen's read of one order: the order, its events and its child orders in one statement; on
    PostgreSQL a read-only session runs without BEGIN/ROLLBACK (fewer round trips under load), and still sees
    what other sessions committed."""
    from sqlalchemy import event

    from hotline.core.db import read_only
    from orders.search import find_order

    with transaction(factory) as session:
        order, _ = create_order(session, text="岳麓区望月湖小区门口流动摊贩占道经营，晚上十点后还在😡",
                                channel="hotline", actor=AGENT)
        apply_action(session, order_id=order.id, action="accept", actor=AGENT)
        order_no = order.order_no
    engine = factory.kw["bind"]
    statements = []

    def count(conn, cursor, statement, *args):
        if statement.startswith("SELECT"):   # SQLite's BEGIN is ours (hotline.core.db), not a read
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with read_only(factory) as session:
            found = find_order(session, order_no=order_no, with_steps=True)
            steps = [e.action for e in found.events]
            children = list(found.children)
            if engine.dialect.name == "postgresql":
                assert session.connection().connection.dbapi_connection.autocommit is True
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert steps == ["create", "accept"] and children == [] and len(statements) == 1
    if engine.dialect.name == "postgresql":
        # One pooled connection, so the next session surely gets the one read_only() used: back to transactions.
        single = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
        try:
            with read_only(session_factory(single)) as session:
                used = session.connection().connection.dbapi_connection
                assert used.autocommit is True
            with session_factory(single)() as session:
                again = session.connection().connection.dbapi_connection
                assert again is used and again.autocommit is False
        finally:
            single.dispose()


def test_creating_an_order_reads_neither_its_events_nor_its_children(factory):
    """A new order's steps and child orders are known to be empty: filing one issues no SELECT for them (it did,
    once per intake, when the first step was recorded)."""
    from sqlalchemy import event

    engine = factory.kw["bind"]
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with transaction(factory) as session:
            create_order(session, text="望城区高塘岭街道滨江华庭小区电梯三天两头坏，老人被困四十分钟！", channel="wechat",
                         actor=AGENT)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert not [s for s in reads if "FROM order_events" in s or "work_orders.parent_id =" in s], reads
