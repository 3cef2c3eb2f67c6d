"""One intake for every channel: a complaint becomes a work order here, whether it came through the REST API (the
dispatch system, the agents' desk), WeChat, the web chat's assistant or Open311.

Each channel reads its own wire format, routes the text (`api.routing_pool`) and calls `file_complaint` inside the
transaction it opened; the order, its routing decision and the dispatch policy's answer are the same whatever the
channel. Open311 requests are dispatched automatically like the others when the router is sure (they used to wait
for an agent, decided 2026-12-06: a citizen's channel should not change how fast the complaint reaches its unit).
The channel also hands over the vector the router matched the text with (`api.routing_pool.route_with_vector`): it
is stored for same-event search (orders/similar.py), so the text is never embedded twice.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy.orm import Session

from orders.models import WorkOrder
from orders.service import Actor, create_order
from orders.similar import store_embedding


def file_complaint(session: Session, *, text: str, channel: str, actor: Actor, routing: dict | None,
                   routing_model: str | None, auto_dispatch: bool, caller_phone: str | None = None,
                   caller_openid: str | None = None, lat: float | None = None, lng: float | None = None,
                   idempotency_key: str | None = None, idempotency_scope: str | None = None,
                   text_vector: np.ndarray | None = None, vector_model: str | None = None,
                   now: dt.datetime | None = None) -> tuple[WorkOrder, bool]:
    """(order, created): the order is stored masked, its routing attached, and dispatched at once when the router
    is sure and `auto_dispatch` (the deployment's setting) allows; the same Idempotency-Key from the same sender
    returns the first order. `text_vector` (of model `vector_model`) is kept for same-event search."""
    order, created = create_order(session, text=text, channel=channel, actor=actor, caller_phone=caller_phone,
                                  caller_openid=caller_openid, lat=lat, lng=lng, idempotency_key=idempotency_key,
                                  idempotency_scope=idempotency_scope, routing=routing, routing_model=routing_model,
                                  auto_dispatch=auto_dispatch, now=now)
    if created and text_vector is not None and vector_model:
        store_embedding(session, order=order, vector=text_vector, model_id=vector_model, new_order=True)
    return order, created
