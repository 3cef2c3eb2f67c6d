"""Routing requests off the event loop, off the general thread pool, and batched across requests.

Routing a complaint is CPU work (embeddings, the classifier, the geocoder) that can take a second under load.
Run through `run_in_threadpool`, 16 concurrent intakes held 16 of anyio's 40 shared worker tokens for that time,
and reads (GET an order, lists, the queue) waited behind them. `run_routing` runs such work in worker threads of a
separate capacity limiter (`HOTLINE_ROUTING_THREADS`), so reads and writes keep the general pool.

`route_complaint` goes further: each request cleans its own text (`Router.prepare`, so a bad text fails only its
own request), then the requests routing at the same moment are routed together by one `Router.route_prepared` call
(nlp/batching.MicroBatcher: at most HOTLINE_EMBED_BATCH_WAIT_MS of wait, up to HOTLINE_EMBED_MAX_BATCH complaints,
two batches in flight so one batch's Python work overlaps the next one's embeddings). One call embeds them all at
once and runs the classifier on all of them; and only the batch's thread, not 16, competes with reads for the GIL.
When the batched call fails, each of its requests is routed again alone: only the complaint at fault fails.

`route_with_vector` also hands over the vector the router embedded the complaint's matter with, so the intake stores
it for same-event search without embedding the text twice; `text_embedder` embeds texts the same way (orders filed
without a vector, the texts of a search).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from nlp.batching import MicroBatcher
from nlp.normalize import InputError
from routing.router import RouteRequest

T = TypeVar("T")
log = logging.getLogger(__name__)
ROUTE_BATCHES_IN_FLIGHT = 2
_batcher_lock = threading.Lock()


def routing_limiter(app) -> anyio.CapacityLimiter:
    """The app's routing limiter for the running event loop (one per loop: tests run several loops)."""
    loop = asyncio.get_running_loop()
    held = getattr(app.state, "routing_limiter", None)
    if held is None or held[0] is not loop:
        held = (loop, anyio.CapacityLimiter(app.state.settings.routing_threads))
        app.state.routing_limiter = held
    return held[1]


async def run_routing(app, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a routing worker thread."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=routing_limiter(app))


def route_batcher(router, settings) -> MicroBatcher | None:
    """The router's batcher of `route_prepared` calls (one per router: a knowledge-base change swaps the router
    and so the batcher); None when batching is off (HOTLINE_EMBED_MAX_BATCH=1)."""
    if settings.embed_max_batch <= 1:
        return None
    # Kept on the router with its owner: a shallow copy of a router (tests make them) must not share it.
    held = router.__dict__.get("_service_route_batcher")
    if held is None or held[0] is not router:
        with _batcher_lock:
            held = router.__dict__.get("_service_route_batcher")
            if held is None or held[0] is not router:
                held = (router, MicroBatcher(router.route_prepared, wait_s=settings.embed_batch_wait_ms / 1000.0,
                                             max_batch=settings.embed_max_batch,
                                             max_in_flight=ROUTE_BATCHES_IN_FLIGHT))
                router._service_route_batcher = held
    return held[1]


def route_one(router, settings, text: str, point, order_id: str) -> tuple[dict, np.ndarray | None]:
    """(routing, the matter's vector) for one complaint, batched with the others routing now; blocks its thread
    (callers on the event loop use `route_with_vector`)."""
    item = router.prepare(RouteRequest(order_id, text, point))   # InputError: this request's alone
    batcher = route_batcher(router, settings)
    if batcher is None:
        return router.route_prepared([item])[0], item.get("matter_vector")
    try:
        return batcher([item])[0], item.get("matter_vector")
    except Exception:
        # The batch failed: each of its requests tries again alone, so a complaint that breaks the router fails
        # only its own request (and a passing fault costs one retry).
        log.warning("a routing batch failed; routing its complaints one by one", exc_info=True)
        return router.route_prepared([item])[0], item.get("matter_vector")


async def route_complaint(app, router, text: str, point=None, *, order_id: str = "") -> dict:
    """`router.route(text, point, order_id=…)`, batched with the other requests routing now, in a routing thread."""
    return (await route_with_vector(app, router, text, point, order_id=order_id))[0]


async def route_with_vector(app, router, text: str, point=None, *,
                            order_id: str = "") -> tuple[dict, np.ndarray | None]:
    """`route_complaint`'s routing and the vector of the complaint's matter it was matched with."""
    return await run_routing(app, route_one, router, app.state.settings, text, point, order_id)


def text_embedder(router) -> tuple[str, Callable[[Sequence[str]], np.ndarray]]:
    """(model id, embed): complaints embedded as the router embeds their matter (its first encoder, the cleaned
    title and head of the text), so vectors stored at intake and made later compare alike."""
    first = router.matcher.encoders.embedders[0]

    def matter(text: str) -> str:
        try:
            return router.prepare(RouteRequest("", text))["match_text"]
        except InputError:   # a stored text the current limits refuse (e.g. a lowered max_text_chars): its head
            return text[:router.settings.max_text_chars]

    def embed(texts: Sequence[str]) -> np.ndarray:
        return first.embed_queries([matter(text) for text in texts])

    return first.model_id, embed
