"""Micro-batching of concurrent embedding calls (nlp/batching.py), with a fake embedder: no model, no timing.

Batches are made deterministic by holding the first model call until every other caller has queued (the test
watches the batcher's queue), so what the second call receives does not depend on thread scheduling.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from nlp.batching import BatchingEmbedder, MicroBatcher, with_batching
from nlp.embedder import FakeEmbedder, TfidfEmbedder


class GatedEmbedder(FakeEmbedder):
    """FakeEmbedder whose first embed_queries call waits for `release`; records each call's texts."""

    def __init__(self, *, fail: BaseException | None = None):
        super().__init__(dim=32)
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def embed_queries(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30), "the test never released the first call"
        if self.fail is not None:
            raise self.fail
        return super().embed_queries(texts)


def _queued(batcher: BatchingEmbedder) -> int:
    with batcher._queries._cond:
        return len(batcher._queries._queue)


def _wait_until_queued(batcher: BatchingEmbedder, n: int) -> None:
    for _ in range(30_000):
        if _queued(batcher) >= n:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{n} callers never queued")


def _run_concurrently(batched: BatchingEmbedder, inner: GatedEmbedder, requests: list[list[str]]):
    """The first request alone in the model (held), the others queued behind it, then released."""
    results: dict[int, object] = {}

    def caller(i: int) -> None:
        try:
            results[i] = batched.embed_queries(requests[i])
        except BaseException as exc:  # noqa: BLE001 - the test inspects what each caller got
            results[i] = exc

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    assert inner.entered.wait(30)
    others = [threading.Thread(target=caller, args=(i,)) for i in range(1, len(requests))]
    for t in others:
        t.start()
    _wait_until_queued(batched, len(requests) - 1)
    inner.release.set()
    for t in [first, *others]:
        t.join(30)
        assert not t.is_alive()
    return results


def test_concurrent_callers_share_one_call_and_each_gets_its_own_rows():
    inner = GatedEmbedder()
    batched = BatchingEmbedder(inner, wait_s=0.0, max_batch=64)
    requests = [[f"小区{i}号楼电梯坏了"] for i in range(12)] + [["噪音扰民", "路灯不亮", "停水"], ["油烟"]]
    results = _run_concurrently(batched, inner, requests)

    reference = FakeEmbedder(dim=32)
    for i, texts in enumerate(requests):
        assert isinstance(results[i], np.ndarray)
        np.testing.assert_array_equal(results[i], reference.embed_queries(texts))
    # the first call alone, then everyone who queued meanwhile in one call
    assert inner.calls[0] == requests[0]
    assert len(inner.calls) == 2
    assert sorted(inner.calls[1]) == sorted(t for r in requests[1:] for t in r)
    assert batched.stats == {"calls": 14, "texts": 16, "batches": 2, "largest": 15}


def test_batches_never_exceed_max_batch_and_keep_whole_calls():
    inner = GatedEmbedder()
    batched = BatchingEmbedder(inner, wait_s=0.0, max_batch=4)
    requests = [["a"]] + [[f"t{i}", f"u{i}"] for i in range(5)] + [[f"big{i}" for i in range(6)]]
    results = _run_concurrently(batched, inner, requests)

    reference = FakeEmbedder(dim=32)
    for i, texts in enumerate(requests):
        np.testing.assert_array_equal(results[i], reference.embed_queries(texts))
    for call in inner.calls[1:]:
        # a call larger than max_batch goes alone; otherwise at most max_batch texts, whole requests only
        assert len(call) <= 4 or len(call) == 6
    assert sorted(t for call in inner.calls for t in call) == sorted(t for r in requests for t in r)


def test_an_exception_reaches_every_caller_of_the_batch():
    inner = GatedEmbedder(fail=RuntimeError("model exploded"))
    batched = BatchingEmbedder(inner, wait_s=0.0, max_batch=64)
    results = _run_concurrently(batched, inner, [[f"诉求{i}"] for i in range(6)])

    assert len(inner.calls) == 2
    for i in range(6):
        assert isinstance(results[i], RuntimeError) and str(results[i]) == "model exploded"
    # the batcher is still usable afterwards
    inner.fail = None
    np.testing.assert_array_equal(batched.embed_queries(["之后"]), FakeEmbedder(dim=32).embed_queries(["之后"]))


def test_a_single_caller_works_and_keeps_the_wrapped_identity():
    inner = FakeEmbedder(dim=16)
    batched = BatchingEmbedder(inner, wait_s=0.001, max_batch=8)
    np.testing.assert_array_equal(batched.embed_queries(["楼下烧烤店油烟太大"]),
                                  inner.embed_queries(["楼下烧烤店油烟太大"]))
    np.testing.assert_array_equal(batched.embed_passages(["餐饮油烟扰民"]), inner.embed_passages(["餐饮油烟扰民"]))
    assert batched.embed_queries([]).shape == (0, 16)
    assert (batched.model_id, batched.dim) == (inner.model_id, inner.dim)
    with pytest.raises(TypeError):
        batched.embed_queries("一个字符串")


def test_wrong_row_count_is_an_error_for_the_caller():
    batcher = MicroBatcher(lambda texts: np.zeros((len(texts) + 1, 4)), wait_s=0.0, max_batch=8)
    with pytest.raises(RuntimeError, match="rows"):
        batcher(["一", "二"])


def test_with_batching_wraps_model_embedders_only():
    fake, tfidf = FakeEmbedder(), TfidfEmbedder()
    wrapped = with_batching([fake, tfidf], wait_s=0.005, max_batch=32)
    assert isinstance(wrapped[0], BatchingEmbedder) and wrapped[0].inner is fake
    assert wrapped[1] is tfidf   # an index rebuild refits TF-IDF: it must stay a TfidfEmbedder
    assert with_batching(wrapped, wait_s=0.005, max_batch=32)[0] is wrapped[0]
    assert with_batching([fake], wait_s=0.005, max_batch=1) == [fake]   # max_batch 1: batching off


def test_routing_runs_in_its_own_worker_pool_not_the_general_one():
    """Routing keeps off anyio's general thread pool: with every general token taken (reads, writes), a routing
    call still runs, in a worker thread, with the limiter HOTLINE_ROUTING_THREADS sizes."""
    import asyncio
    from types import SimpleNamespace

    import anyio.to_thread

    from api.routing_pool import routing_limiter, run_routing

    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(routing_threads=3)))

    async def scenario():
        general = anyio.to_thread.current_default_thread_limiter()
        general.total_tokens = 1
        await general.acquire()          # the general pool is saturated
        try:
            ident = await asyncio.wait_for(run_routing(app, lambda x, y=0: (threading.get_ident(), x + y), 2, y=3), 30)
        finally:
            general.release()
        limiter = routing_limiter(app)
        return ident, limiter, limiter is routing_limiter(app)

    (thread_id, value), limiter, same = asyncio.run(scenario())
    assert value == 5 and thread_id != threading.get_ident()
    assert limiter.total_tokens == 3 and same


def test_concurrent_routing_requests_are_routed_in_one_call_with_their_own_answers(router):
    """api/routing_pool: requests routing at the same moment go through one Router.route_prepared call, each gets
    the answer router.route gives it alone, and a bad text fails only its own request."""
    from api.routing_pool import route_batcher, route_one
    from nlp.normalize import InputError

    texts = ["岳麓区望月湖街道工地晚上施工噪音太大", "雨花区高桥街道停水了", "桔子洲街道楼下邻居装修吵",
             "岳麓区餐馆油烟扰民", "高桥街道商铺音响声音很大"]
    alone = [router.route(t) for t in texts]

    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()
    real = router.route_prepared

    def gated(items, **kwargs):
        calls.append(len(items))
        if len(calls) == 1:
            entered.set()
            assert release.wait(30)
        return real(items, **kwargs)

    router.route_prepared = gated     # before the batcher is made: it calls this
    batcher = route_batcher(router, router.settings)
    assert route_batcher(router, router.settings) is batcher
    results: dict[int, object] = {}

    def caller(i: int, text: str) -> None:
        try:
            results[i] = route_one(router, router.settings, text, None, f"id{i}")[0]   # (routing, vector)
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    first = threading.Thread(target=caller, args=(0, texts[0]))
    first.start()
    assert entered.wait(30)
    batcher.max_in_flight = 1          # the others wait for the first batch, so they form one batch
    others = [threading.Thread(target=caller, args=(i, t)) for i, t in enumerate(texts[1:], start=1)]
    bad = threading.Thread(target=caller, args=(99, "   "))
    for t in [*others, bad]:
        t.start()
    for t in [bad]:
        t.join(30)
    _wait_until_queued(_queue_view(batcher), len(texts) - 1)
    release.set()
    for t in [first, *others]:
        t.join(30)
        assert not t.is_alive()

    assert calls == [1, len(texts) - 1]
    assert isinstance(results[99], InputError)
    for i, expected in enumerate(alone):
        got = results[i]
        assert isinstance(got, dict) and got["id"] == f"id{i}"
        for key in ("department", "decision", "confidence", "kb_item", "candidates"):
            assert got[key] == expected[key], (i, key)


def _queue_view(batcher):
    """_wait_until_queued reads `._queries`: give it the route batcher under that name."""
    from types import SimpleNamespace

    return SimpleNamespace(_queries=batcher)


def test_a_complaint_that_breaks_the_router_fails_only_its_own_request(router):
    """When a batched routing call raises, each request of the batch is routed again alone: the others get their
    answers, the one at fault gets the error."""
    from api.routing_pool import route_batcher, route_one

    texts = ["岳麓区望月湖街道工地晚上施工噪音太大", "雨花区高桥街道停水了", "BOOM 桔子洲街道楼下邻居装修吵"]
    alone = {t: router.route(t) for t in texts if "BOOM" not in t}
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()
    real = router.route_prepared

    def fragile(items, **kwargs):
        calls.append(len(items))
        if len(calls) == 1:
            entered.set()
            assert release.wait(30)
        if any("BOOM" in item["request"].text for item in items):
            raise RuntimeError("router bug")
        return real(items, **kwargs)

    router.route_prepared = fragile
    batcher = route_batcher(router, router.settings)
    results: dict[str, object] = {}

    def caller(text: str) -> None:
        try:
            results[text] = route_one(router, router.settings, text, None, "")[0]   # (routing, vector)
        except Exception as exc:  # noqa: BLE001
            results[text] = exc

    first = threading.Thread(target=caller, args=(texts[0],))
    first.start()
    assert entered.wait(30)
    batcher.max_in_flight = 1
    others = [threading.Thread(target=caller, args=(t,)) for t in texts[1:]]
    for t in others:
        t.start()
    _wait_until_queued(_queue_view(batcher), 2)
    release.set()
    for t in [first, *others]:
        t.join(30)
        assert not t.is_alive()

    assert calls[:2] == [1, 2]                      # the first alone, then the two others together (which fails)
    assert sorted(calls[2:]) == [1, 1]              # then each of those two alone
    assert isinstance(results[texts[2]], RuntimeError)
    for text, expected in alone.items():
        assert results[text]["department"] == expected["department"]
        assert results[text]["confidence"] == expected["confidence"]
