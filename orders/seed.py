"""A realistic synthetic history for a city: orders across channels, districts, matters and outcomes, each with its
lifecycle events, so indicators, the assistant and the demo have real-looking data. Reproducible (seeded).

The complaint texts are the knowledge base's own example complaints placed in a random street of the city, routed
by the real router. Each order's true owner is known: the unit of the example's list entry in the street it was
placed in (or, when not placed, where the example's own words say). The list's own examples are easier than real
calls, so besides the router's real mistakes some decisions are made wrong on purpose (the router's runner-up named
instead), at the rates a centre sees. A wrongly named unit returns the order and the centre re-dispatches it to the
owner; so the unit that finally holds an order is its owner, never a random one, and a model trained on the
history learns the list's practice, not noise. Outcomes are drawn around the matter's time limit (most on time,
some late, some reopened), and recent orders are still open.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from hotline.core.db import transaction
from nlp.normalize import normalize
from orders.lifecycle import add_working_days
from orders.service import Actor, apply_action, create_order
from orders.similar import store_embedding
from routing.geocode import GeocodeResult
from routing.router import Router, RouteRequest

CHANNEL_WEIGHTS = {"hotline": 0.55, "wechat": 0.25, "web": 0.12, "app": 0.05, "grid": 0.03}
SYSTEM = Actor("seed", "system")


def _work_time(rng: random.Random, day: dt.datetime) -> dt.datetime:
    hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 9, 11, 13, 13, 12, 11, 10, 10, 9, 7,
                                           4, 2])[0]
    return day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))


def seed_history(router: Router, sessions: sessionmaker[Session], *, orders: int = 5000, days: int = 30,
                 seed: int = 12345, now: dt.datetime | None = None,
                 progress: Callable[[int], None] = lambda n: None) -> dict:
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    kb = router.kb
    entries = kb.active_entries()
    streets = list(router.gazetteer.streets.items())
    texts, owners, created_times, channels = [], [], [], []
    for _ in range(orders):
        entry = rng.choice(entries)
        text = rng.choice(entry.examples)
        place = None
        if rng.random() < 0.6:   # callers name the place more often than the list's examples do
            street_id, (street_name, district) = rng.choice(streets)
            if entry.scope != "全市":
                candidates = [s for s in streets if router.gazetteer.districts[s[1][1]] == entry.scope]
                street_id, (street_name, district) = rng.choice(candidates) if candidates else (street_id, (street_name, district))
            district_name = router.gazetteer.districts[district]
            text = f"{district_name}{street_name}，{text}"
            place = GeocodeResult(district={"adcode": district, "name": district_name},
                                  street={"id": street_id, "name": street_name}, confidence=1.0)
        texts.append(text)
        # Not placed by us: the example's own words may name a place (a road, a 小区), as the router reads them.
        owners.append(_owner_code(router, entry, place or router.geocoder.geocode(normalize(text))))
        day = now - dt.timedelta(days=rng.uniform(0, days))
        # Working-hour shape, kept inside the period (the first day's hour could fall before it).
        created_times.append(min(max(_work_time(rng, day), now - dt.timedelta(days=days)), now - dt.timedelta(minutes=5)))
        channels.append(rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0])
    order_of = sorted(range(orders), key=lambda i: created_times[i])

    routed: list[dict] = []
    vectors: list = []
    batch = 256
    for start in range(0, orders, batch):
        items = [router.prepare(RouteRequest(str(i), texts[i])) for i in order_of[start:start + batch]]
        routed.extend(router.route_prepared(items, batch_size=batch))
        vectors.extend(item.get("matter_vector") for item in items)   # kept for same-event search, as intake does
        progress(len(items) // 2)
    vector_model = router.matcher.encoders.embedders[0].model_id

    stats = {"orders": 0, "closed": 0, "returned": 0, "reopened": 0, "open": 0, "rejected": 0}
    for n, (i, routing, vector) in enumerate(zip(order_of, routed, vectors)):
        created = created_times[i]
        phone = f"13{rng.randrange(10**8, 10**9)}" if rng.random() < 0.9 else None
        routing = _as_named(routing, owners[i], rng)
        with transaction(sessions) as session:
            order, _ = create_order(session, text=texts[i], channel=channels[i], actor=SYSTEM, caller_phone=phone,
                                    routing=routing, routing_model=router.embedder_note, now=created)
            if vector is not None:
                store_embedding(session, order=order, vector=vector, model_id=vector_model)
            _simulate(session, rng, order.id, routing, owners[i], created, now, stats)
        stats["orders"] += 1
        if n % 2 == 1:
            progress(1)
    return stats


def _owner_code(router: Router, entry, place: GeocodeResult) -> str | None:
    """The code of the unit that owns the example's matter where it was placed; None when no listed unit can be
    named (a street/town matter with no place given: the centre would have to ask the caller)."""
    unit, _, _ = router.resolve_unit(entry.lead, entry.level, place)
    return getattr(unit, "code", None)


def _as_named(routing: dict, owner: str | None, rng: random.Random) -> dict:
    """The decision as the centre saw it. Real calls are harder than the list's examples: about 6 % of automatic
    and 15 % of assisted decisions name a wrong unit, here the router's first runner-up that is not the owner."""
    named = (routing.get("department") or {}).get("code")
    if owner is None or named != owner or rng.random() >= (0.06 if routing.get("decision") == "auto" else 0.15):
        return routing
    runner_up = next((c["department"] for c in routing.get("candidates") or []
                      if (c.get("department") or {}).get("code") not in (None, owner)), None)
    return {**routing, "department": runner_up} if runner_up else routing


def _simulate(session: Session, rng: random.Random, order_id: int, routing: dict, owner: str | None,
              created: dt.datetime, now: dt.datetime, stats: dict) -> None:
    def act(action: str, when: dt.datetime, **data) -> bool:
        if when >= now:
            return False   # the future has not happened: the order stays where it is
        apply_action(session, order_id=order_id, action=action, actor=SYSTEM, now=when, **data)
        return True

    t = created + dt.timedelta(minutes=rng.uniform(2, 40))
    if rng.random() < 0.02:
        act("reject", t, reason="不属于受理范围")
        stats["rejected"] += 1
        return
    if not act("accept", t):
        stats["open"] += 1
        return
    right = (routing.get("department") or {}).get("code")
    if not right:
        stats["open"] += 1
        return
    auto = routing.get("decision") == "auto"
    t += dt.timedelta(minutes=rng.uniform(1, 5) if auto else rng.uniform(10, 180))
    # When the router named another unit than the owner, that unit returns the order and the centre re-dispatches
    # it to the owner, so the decision counts as wrong in 分拨准确率 (a return by the named unit). With no owner
    # known (no place for a street/town matter) the router's unit keeps it.
    wrong = owner is not None and owner != right
    if not act("dispatch", t, department_code=right, mode="auto" if auto else "assisted"):
        stats["open"] += 1
        return
    if wrong:
        t += dt.timedelta(hours=rng.uniform(1, 30))
        if not act("return", t, reason="非本单位职责", at_fault=rng.random() < 0.3):
            stats["open"] += 1
            return
        stats["returned"] += 1
        t += dt.timedelta(minutes=rng.uniform(20, 240))
        if not act("dispatch", t, department_code=owner, mode="manual"):
            stats["open"] += 1
            return
    t += dt.timedelta(hours=rng.uniform(0.5, 8))
    if not act("sign", t):
        stats["open"] += 1
        return
    limit = routing.get("time_limit_days") or 5
    deadline = add_working_days(t, limit)
    share = rng.choices([rng.uniform(0.1, 0.5), rng.uniform(0.5, 0.8), rng.uniform(0.8, 1.0), rng.uniform(1.0, 2.5)],
                        weights=[30, 40, 18, 12])[0]
    finish = t + (deadline - t) * share
    if rng.random() < 0.5:
        act("handle", t + (finish - t) / 2, note="已现场核查")
    if not act("complete", finish, result="已处理并告知诉求人"):
        stats["open"] += 1
        return
    if not act("approve", finish + dt.timedelta(hours=rng.uniform(1, 20))):
        stats["open"] += 1
        return
    stats["closed"] += 1
    verdict = rng.choices(["满意", "基本满意", "不满意"], weights=[70, 18, 12])[0]
    if act("rate", finish + dt.timedelta(hours=rng.uniform(20, 60)), satisfaction=verdict) and verdict == "不满意" \
            and rng.random() < 0.4:
        if act("reopen", finish + dt.timedelta(hours=rng.uniform(61, 80)), reason="诉求人不满意，问题仍未解决"):
            stats["reopened"] += 1
