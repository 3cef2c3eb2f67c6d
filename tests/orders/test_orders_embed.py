"""`hotline orders embed`: orders stored without a text vector (a bulk import of past orders, orders filed while no
router was loaded) get one in committed batches, so same-event search at intake, which embeds nothing, meets them.
On SQLite and PostgreSQL, with the FakeEmbedder test double; the command itself over the tiny city."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from typer.testing import CliRunner

from hotline.core.config import get_settings
from hotline.core.db import make_engine, session_factory, transaction
from nlp.embedder import FakeEmbedder
from orders.intake import file_complaint
from orders.lifecycle import State
from orders.merge import merge_order
from orders.models import OrderEmbedding, WorkOrder
from orders.service import Actor
from orders.similar import Place, embed_missing_after, find_similar, orders_without_vector

EMBEDDER = FakeEmbedder(dim=256)
MODEL = EMBEDDER.model_id
AGENT = Actor("agent-li", "agent")
START = dt.datetime(2026, 12, 7, 0, 10, tzinfo=dt.UTC)
XINTIAN = Place("430111", "430111005", "新天村社区")

OUTAGE = ("停水问题：雨花区高桥街道新天村社区一带从今天早上七点开始停水，到现在还没来水，也没看到任何停水通知！！"
          "家里老人小孩都等着用水，做饭洗澡都没办法，请尽快处理。")
SAME_OUTAGE_LATER = "投诉！！！雨花区高桥街道新天村社区停水一天了，没有提前通知，什么时候来水？😡"
NOISE = "雨花区高桥街道新天村社区旁边的工地每天晚上十二点以后还在施工，噪音太大了，吵得人睡不着觉。"
STREETLIGHT = "【路灯】高桥街道新天村社区门口的路灯坏了一个多星期，晚上一片漆黑，老人出门摔了一跤。"
PARKING = "新天村社区小区里车位被外来车辆长期占用，业主回家没地方停车，物业不管。Please help!"


def embed(texts):
    return EMBEDDER.embed_queries(list(texts))


def file(session, text: str, *, minutes: int = 0, vector: bool = False) -> WorkOrder:
    routing = {"decision": "suggest", "confidence": 0.5, "candidates": [],
               "address": {"district": {"adcode": XINTIAN.district_adcode}, "street": {"id": XINTIAN.street_id},
                           "community": XINTIAN.community}}
    order, _ = file_complaint(session, text=text, channel="hotline", actor=AGENT, routing=routing, routing_model=None,
                              auto_dispatch=False, now=START + dt.timedelta(minutes=minutes),
                              text_vector=embed([text])[0] if vector else None, vector_model=MODEL)
    return order


def vectors(session) -> dict[int, bytes]:
    return dict(session.execute(select(OrderEmbedding.order_id, OrderEmbedding.vector)
                                .where(OrderEmbedding.model_id == MODEL)).all())


def same_event_at_intake(session, text: str) -> list[str]:
    """What the intake proposes: a read session's search that embeds nothing."""
    return [hit.order_no for hit in find_similar(session, vector=embed([text])[0], model_id=MODEL, place=XINTIAN,
                                                 at=START + dt.timedelta(hours=3), embed=None)]


def test_orders_without_a_vector_get_one_in_batches_and_intake_search_then_meets_them(factory):
    with transaction(factory) as session:
        outage, noise, light = file(session, OUTAGE), file(session, NOISE, minutes=5), file(session, STREETLIGHT, minutes=9)
        parking = file(session, PARKING, minutes=12, vector=True)          # filed through a channel: has its vector
        caller = file(session, SAME_OUTAGE_LATER, minutes=30)
        merge_order(session, order=caller, into=outage, actor=AGENT)     # a merged caller is not an event of its own
        session.execute(update(WorkOrder).where(WorkOrder.id == light.id).values(state=State.CLOSED.value))
        ids = outage.id, noise.id, light.id, parking.id, caller.id
    with factory() as session:
        assert same_event_at_intake(session, SAME_OUTAGE_LATER) == []     # the outage has no vector: never compared
        assert orders_without_vector(session, model_id=MODEL) == 3
        assert orders_without_vector(session, model_id=MODEL, open_only=True) == 2
        parking_vector = vectors(session)[parking.id]

    steps, last_id = [], 0
    while True:
        with transaction(factory) as session:
            step = embed_missing_after(session, model_id=MODEL, embed=embed, after_id=last_id, limit=2)
        if not step.embedded:
            break
        steps.append(step.embedded)
        last_id = step.last_id
    assert steps == [2, 1]
    outage_id, noise_id, light_id, parking_id, caller_id = ids
    with factory() as session:
        stored = vectors(session)
        assert set(stored) == {outage_id, noise_id, light_id, parking_id}   # the merged caller stays without one
        assert stored[parking_id] == parking_vector                          # a vector already stored is kept as it was
        assert stored[outage_id] == embed([OUTAGE])[0].astype("<f4").tobytes()
        assert same_event_at_intake(session, SAME_OUTAGE_LATER) == [outage.order_no]
        assert orders_without_vector(session, model_id=MODEL) == 0
    with transaction(factory) as session:                                   # a second run embeds nothing
        assert embed_missing_after(session, model_id=MODEL, embed=embed).embedded == 0


def test_open_only_leaves_closed_history_alone_and_another_model_counts_apart(factory):
    with transaction(factory) as session:
        old = file(session, STREETLIGHT)
        session.execute(update(WorkOrder).where(WorkOrder.id == old.id).values(state=State.ARCHIVED.value))
        new = file(session, NOISE, minutes=1)
    with transaction(factory) as session:
        step = embed_missing_after(session, model_id=MODEL, embed=embed, open_only=True)
    assert step.embedded == 1 and step.last_id == new.id
    with factory() as session:
        assert set(vectors(session)) == {new.id}
        assert orders_without_vector(session, model_id=MODEL) == 1                 # the archived one
        assert orders_without_vector(session, model_id="e5-small-other") == 2     # vectors are per model


def test_the_command_embeds_open_orders_only_and_a_second_run_embeds_nothing(tmp_path, monkeypatch, tiny_data_root):
    url = f"sqlite:///{tmp_path / 'embed.sqlite3'}"
    monkeypatch.setenv("HOTLINE_DATABASE_URL", url)
    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(tiny_data_root))
    monkeypatch.setenv("HOTLINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOTLINE_EMBEDDER", "tfidf")
    get_settings.cache_clear()
    from hotline.cli import app

    runner = CliRunner()
    try:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        factory = session_factory(make_engine(url))
        with transaction(factory) as session:
            for minutes, text in enumerate([OUTAGE, NOISE, STREETLIGHT, PARKING]):
                order = file(session, text, minutes=minutes)
            session.execute(update(WorkOrder).where(WorkOrder.id == order.id).values(state=State.CLOSED.value))
        first = runner.invoke(app, ["orders", "embed", "--batch", "2"], env={"COLUMNS": "200"})
        assert first.exit_code == 0, first.output
        assert "3 orders embedded with tfidf" in first.output
        with factory() as session:
            models = set(session.scalars(select(OrderEmbedding.model_id)))
            assert len(session.scalars(select(OrderEmbedding.id)).all()) == 3 and len(models) == 1
        again = runner.invoke(app, ["orders", "embed"], env={"COLUMNS": "200"})
        assert again.exit_code == 0 and "0 orders embedded" in again.output
        assert "every open order already has a vector" in again.output
        assert runner.invoke(app, ["orders", "embed", "--batch", "0"]).exit_code == 2   # refused, named
    finally:
        get_settings.cache_clear()
