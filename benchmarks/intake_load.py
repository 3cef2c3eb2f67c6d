"""Sustained order intake through the HTTP API, routing on, on SQLite and on PostgreSQL.

A real server (`uvicorn` over `api.app:create_app`, the offline models, the 长沙 knowledge base) runs in its own
process on loopback; this process is the dispatch system: N concurrent clients POST /api/v1/orders with an API key and
an Idempotency-Key, using the development-set complaints. Bounded in count and in time. Reports orders/s over the
whole run and latency percentiles, and checks that the database holds exactly the orders that were answered 201.

    .venv/bin/python benchmarks/intake_load.py --database sqlite --requests 600 --concurrency 8
    .venv/bin/python benchmarks/intake_load.py --database postgresql+psycopg://postgres@127.0.0.1:54329/hotline_bench
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app_server import free_port, start_app, wait_for_app  # noqa: E402
from assistant.manage import stop_process  # noqa: E402

DEV_SET = REPO / "training_data" / "dev" / "routing_dev.jsonl"


def _texts() -> list[str]:
    return [json.loads(line)["text"] for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _reset_postgres(url: str) -> None:
    from sqlalchemy import text

    from hotline.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


async def _load(base: str, key: str, texts: list[str], *, requests: int, concurrency: int, max_seconds: float):
    rng = random.Random(7)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(range(requests))
    deadline = time.perf_counter() + max_seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        while queue and time.perf_counter() < deadline:
            n = queue.pop()
            body = {"text": texts[n % len(texts)], "channel": rng.choice(["hotline", "wechat", "web"]),
                    "caller_phone": f"139{rng.randrange(10**8):08d}"}
            started = time.perf_counter()
            response = await client.post("/api/v1/orders", json=body,
                                         headers={"X-API-Key": key, "Idempotency-Key": f"bench-{n}"})
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        # warm-up: the first requests pay for lazy initialisation (jieba, torch graphs)
        for i in range(5):
            await client.post("/api/v1/orders", json={"text": texts[i]}, headers={"X-API-Key": key,
                                                                                  "Idempotency-Key": f"warm-{i}"})
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, statuses, elapsed


def run(database: str, requests: int, concurrency: int, max_seconds: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    url = f"sqlite:///{work / 'bench.sqlite3'}" if database == "sqlite" else database
    if url.startswith("postgresql"):
        _reset_postgres(url)
    env = {**os.environ, "HOTLINE_DATABASE_URL": url, "HOTLINE_STATE_DIR": str(work / "state"),
           "HOTLINE_OUTBOX_POLL_S": "0"}
    hotline = str(Path(sys.executable).parent / "hotline")
    subprocess.run([hotline, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run([hotline, "apikey", "create", "--name", "bench", "--scope", "orders:write"], env=env,
                         check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    server = start_app(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_app(base, server, timeout=300)
        latencies, statuses, elapsed = asyncio.run(_load(base, key, _texts(), requests=requests,
                                                         concurrency=concurrency, max_seconds=max_seconds))
    finally:
        stop_process(server)
    from sqlalchemy import func, select

    from hotline.db import make_engine, session_factory
    from orders.models import WorkOrder

    with session_factory(make_engine(url))() as session:
        stored = session.scalar(select(func.count(WorkOrder.id)).where(WorkOrder.parent_id.is_(None)))
    created = statuses.get(201, 0)
    return {"database": "sqlite" if url.startswith("sqlite") else "postgresql", "requests": len(latencies),
            "concurrency": concurrency, "seconds": round(elapsed, 2), "orders_per_second": round(created / elapsed, 2),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1), "max_ms": round(max(latencies) * 1000, 1),
            "statuses": statuses, "orders_in_database": stored - 5, "lost_or_duplicated": stored - 5 - created,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite", help="'sqlite' (a fresh file) or a PostgreSQL URL (reset!)")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.database, args.requests, args.concurrency, args.max_seconds)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
