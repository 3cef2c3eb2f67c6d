"""Routing requests off the event loop and off the general thread pool.

Routing a complaint is CPU work (embeddings, the classifier, the geocoder) that can take a second under load.
Run through `run_in_threadpool`, 16 concurrent intakes held 16 of anyio's 40 shared worker tokens for that time,
and reads (GET an order, lists, the queue) waited behind them. `run_routing` runs it in worker threads of a
separate capacity limiter (`HOTLINE_ROUTING_THREADS`), so reads and writes keep the general pool. Concurrent
routing threads meet in the micro-batching embedder (nlp/batching.py), which turns their embedding calls into one.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


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
