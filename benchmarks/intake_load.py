"""Sustained order intake through the HTTP API, routing on, on SQLite and on PostgreSQL.

A real server (`uvicorn` over `api.app:create_app`, the offline models, the 长沙 knowledge base) runs in its own
process on loopback; this process is the dispatch system: N concurrent clients POST /api/v1/orders with an API key and
an Idempotency-Key, using the development-set complaints (`--texts dev`, short) or made-up letters of real length
(`--texts letters`: a title sentence, a greeting to the 书记/市长, 200–400 characters about a 小区, thanks at the end;
generated from templates here, no real letter). Bounded in count and in time. Reports orders/s over the whole run
and latency percentiles, and checks that the database holds exactly the orders that were answered 201.

With `--readers N`, N staff screens read at the same time as the intake runs: each GETs a stored order (with its
events) or a page of the order list, then waits `--read-interval` seconds (a person looking at the answer), and the
read latencies are reported separately (p50/p95/p99).

    .venv/bin/python benchmarks/intake_load.py --database sqlite --requests 600 --concurrency 8
    .venv/bin/python benchmarks/intake_load.py --database postgresql+psycopg://postgres@127.0.0.1:54329/hotline_bench
    .venv/bin/python benchmarks/intake_load.py --texts letters --concurrency 16 --readers 16 --requests 600
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


# Made-up letters shaped like the ones citizens write to the 市长信箱 (no real letter is used or committed).
_PLACES = [("岳麓区", "观沙岭街道", "麓景苑"), ("雨花区", "左家塘街道", "桂花园"), ("天心区", "坡子街街道", "湘江名邸"),
           ("开福区", "四方坪街道", "福城新村"), ("芙蓉区", "东湖街道", "锦绣家园"), ("望城区", "高塘岭街道", "滨江华庭"),
           ("长沙县", "星沙街道", "星城花苑"), ("雨花区", "洞井街道", "清水塘小区"), ("岳麓区", "望城坡街道", "金桥佳苑"),
           ("天心区", "南托街道", "枫林雅居")]
_MATTERS = [
    ("小区旁工地夜间施工噪音扰民", "小区北门外的工地每天晚上十点以后还在打桩、浇筑混凝土，机器轰鸣一直持续到凌晨两三点",
     "家里有高三的孩子和八十多岁的老人，已经连续一个多月睡不好觉，孩子上课注意力都集中不了",
     "恳请有关部门依法查处夜间违规施工，督促施工单位合理安排作业时间"),
    ("小区电梯频繁故障无人维修", "我们这栋楼的两部电梯今年以来已经停运了十几次，上个星期还有老人被困在电梯里将近四十分钟",
     "物业每次都说已经报修，但维保单位来看一下就走了，没过几天又坏，楼里住着不少行动不便的老人",
     "希望相关部门督促物业和维保单位彻底检修电梯，确保居民的出行安全"),
    ("小区物业乱收停车费", "物业公司今年突然把地面停车费从每月一百五十元涨到三百元，既没有召开业主大会，也没有公示收费依据",
     "业主去物业办公室询问，工作人员态度很差，还说不交钱就不让车辆进小区",
     "请价格主管部门核实物业收费是否合规，维护我们业主的合法权益"),
    ("小区垃圾长期无人清运", "小区南侧的垃圾站已经半个多月没有人来清运，垃圾堆得比人还高，天气一热臭气熏天，还招来了很多老鼠和苍蝇",
     "我们多次向物业和社区反映，都说在协调，但一直没有结果",
     "请环卫部门尽快安排清运，并建立长效的清运机制"),
    ("小区周边道路路灯长期不亮", "从小区西门到公交站的这段路大约有五百米，十几盏路灯已经坏了两个多月，晚上一片漆黑",
     "很多上夜班的居民和放学的学生都要走这段路，前几天还有一位阿姨在这里摔伤了腿",
     "希望路灯管理部门尽快维修，消除安全隐患"),
    ("小区楼顶违章搭建", "小区顶楼的一户业主在楼顶私自搭建了一个七八十平方米的彩钢房，施工时把楼顶的防水层都破坏了",
     "现在一下雨我们顶层几户家里就漏水，墙面发霉，找他协商也不理睬",
     "请城管执法部门依法拆除违章建筑，恢复楼顶原貌"),
    ("小区停水没有提前通知", "小区从前天早上开始突然停水，到现在已经两天了，事前没有任何通知，打供水公司电话也一直占线",
     "家里老人小孩吃饭洗澡都成了问题，只能到亲戚家去接水",
     "请供水部门尽快恢复供水，并说明停水原因和恢复时间"),
    ("小区门口餐馆油烟扰民", "小区一楼临街新开了几家烧烤店，油烟直接排到我们住宅楼的窗户边，每天从傍晚一直到深夜",
     "家里的窗户根本不敢打开，衣服晾在外面全是油烟味，晚上还有食客喝酒喧哗",
     "希望相关部门检查这些餐馆的油烟净化设施和经营许可，还居民一个安静干净的环境"),
]
_SALUTE = ["尊敬的市长", "尊敬的书记", "尊敬的市长、书记", "尊敬的区长"]
_OPEN = ["您好！", "您好！我是一名普通市民，", "您好！很冒昧给您写信，"]
_THANKS = ["万分感谢！", "谢谢您在百忙之中看我的来信！", "感谢政府的关心，盼复！", "谢谢！"]


def letters(n: int, seed: int = 11) -> list[str]:
    """`n` made-up letters of real length (about 200–400 characters of story) from the templates above."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        district, street, estate = rng.choice(_PLACES)
        title, happened, hardship, ask = rng.choice(_MATTERS)
        months = rng.randint(1, 11)
        story = (f"我住在{district}{street}{estate}{rng.randint(1, 30)}栋，{happened}。{hardship}。"
                 f"这个问题从{months}月份就开始了，我们楼里的住户在{rng.choice(['业主群', '社区', '物业', '12345热线'])}"
                 f"反映过{rng.randint(2, 9)}次，相关单位也来看过，但问题始终没有得到解决，大家都很着急。"
                 f"{ask}。{rng.choice(['', '附近的居民都有同样的意见。', '我们相信政府一定会为老百姓办实事。'])}")
        if estate.endswith("小区") and title.startswith("小区"):
            title = title[2:]
        out.append(f"关于{estate}{title}的问题\n{rng.choice(_SALUTE)}：\n{rng.choice(_OPEN)}{story}\n"
                   f"{rng.choice(_THANKS)}\n一位{estate}的业主（第{i + 1}封）")
    return out


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to compare work per order across machine loads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_postgres(url: str) -> None:
    from sqlalchemy import text

    from hotline.core.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


async def _load(base: str, key: str, texts: list[str], *, requests: int, concurrency: int, max_seconds: float,
                readers: int = 0, read_interval: float = 0.1):
    rng = random.Random(7)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    read_latencies: list[float] = []
    read_statuses: dict[int, int] = {}
    order_nos: list[str] = []
    queue = list(range(requests))
    deadline = time.perf_counter() + max_seconds
    intake_done = asyncio.Event()

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
            if response.status_code == 201:
                order_nos.append(response.json()["order_no"])

    async def reader_loop(client: httpx.AsyncClient, number: int) -> None:
        own = random.Random(100 + number)
        await asyncio.sleep(own.random() * read_interval)   # spread the readers out
        while not intake_done.is_set():
            if own.random() < 0.7:
                path = f"/api/v1/orders/{own.choice(order_nos)}"
            else:
                path = f"/api/v1/orders?limit=20&offset={own.randrange(0, 40)}"
            started = time.perf_counter()
            response = await client.get(path, headers={"X-API-Key": key})
            read_latencies.append(time.perf_counter() - started)
            read_statuses[response.status_code] = read_statuses.get(response.status_code, 0) + 1
            await asyncio.sleep(read_interval)

    async def intake(client: httpx.AsyncClient) -> None:
        try:
            await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        finally:
            intake_done.set()

    limits = httpx.Limits(max_connections=concurrency + readers)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        # warm-up: the first requests pay for lazy initialisation (jieba, torch graphs)
        for i in range(5):
            response = await client.post("/api/v1/orders", json={"text": texts[i]},
                                         headers={"X-API-Key": key, "Idempotency-Key": f"warm-{i}"})
            order_nos.append(response.json()["order_no"])
        started = time.perf_counter()
        await asyncio.gather(intake(client), *(reader_loop(client, r) for r in range(readers)))
        elapsed = time.perf_counter() - started
    return latencies, statuses, elapsed, read_latencies, read_statuses


def run(database: str, requests: int, concurrency: int, max_seconds: float, *, text_kind: str = "dev",
        readers: int = 0, read_interval: float = 0.1, extra_env: dict[str, str] | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    url = f"sqlite:///{work / 'bench.sqlite3'}" if database == "sqlite" else database
    if url.startswith("postgresql"):
        _reset_postgres(url)
    env = {**os.environ, "HOTLINE_DATABASE_URL": url, "HOTLINE_STATE_DIR": str(work / "state"),
           "HOTLINE_OUTBOX_POLL_S": "0", **(extra_env or {})}
    hotline = str(Path(sys.executable).parent / "hotline")
    subprocess.run([hotline, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run([hotline, "apikey", "create", "--name", "bench", "--scope", "orders:write", "--scope",
                          "orders:read"], env=env,
                         check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    server = start_app(port, env)
    base = f"http://127.0.0.1:{port}"
    texts = letters(max(requests, 400)) if text_kind == "letters" else _texts()
    load_before = os.getloadavg()
    try:
        wait_for_app(base, server, timeout=300)
        load_before = os.getloadavg()
        cpu_before = _cpu_seconds(server.pid)
        client_before = time.process_time()
        latencies, statuses, elapsed, read_latencies, read_statuses = asyncio.run(_load(
            base, key, texts, requests=requests, concurrency=concurrency, max_seconds=max_seconds, readers=readers,
            read_interval=read_interval))
        load_after = os.getloadavg()
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        client_cpu = time.process_time() - client_before
    finally:
        stop_process(server)
    from sqlalchemy import func, select

    from hotline.core.db import make_engine, session_factory
    from orders.models import WorkOrder

    with session_factory(make_engine(url))() as session:
        stored = session.scalar(select(func.count(WorkOrder.id)).where(WorkOrder.parent_id.is_(None)))
    created = statuses.get(201, 0)
    result = {"database": "sqlite" if url.startswith("sqlite") else "postgresql", "texts": text_kind,
              "mean_text_chars": round(statistics.mean(len(t) for t in texts), 1), "requests": len(latencies),
              "concurrency": concurrency, "seconds": round(elapsed, 2),
              "orders_per_second": round(created / elapsed, 2),
              "p50_ms": round(statistics.median(latencies) * 1000, 1),
              "p95_ms": round(_percentile(latencies, 0.95) * 1000, 1),
              "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1), "max_ms": round(max(latencies) * 1000, 1),
              "statuses": statuses, "orders_in_database": stored - 5, "lost_or_duplicated": stored - 5 - created,
              # the server's CPU time over the run (warm-up and reads included) per order: comparable across loads
              "server_cpu_s": round(server_cpu, 2), "server_cpu_ms_per_order": round(server_cpu / created * 1000, 1),
              # this process (the clients) shares the 2 cores with the server: what it took of them
              "client_cpu_s": round(client_cpu, 2),
              "machine_cpu_seconds_available": round(elapsed * (os.cpu_count() or 1), 2)}
    if readers:
        result["reads"] = {"readers": readers, "interval_s": read_interval, "count": len(read_latencies),
                           "per_second": round(len(read_latencies) / elapsed, 2),
                           "p50_ms": round(statistics.median(read_latencies) * 1000, 1) if read_latencies else None,
                           "p95_ms": round(_percentile(read_latencies, 0.95) * 1000, 1),
                           "p99_ms": round(_percentile(read_latencies, 0.99) * 1000, 1),
                           "max_ms": round(max(read_latencies) * 1000, 1) if read_latencies else None,
                           "statuses": read_statuses}
    result["settings"] = {k: v for k, v in (extra_env or {}).items()}
    result["load_average_before_after"] = [round(load_before[0], 2), round(load_after[0], 2)]
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return result


def router_ceiling(texts: list[str], batch: int, extra_env: dict[str, str] | None = None) -> dict:
    """The router alone on the same texts, in this process: no HTTP, no database, no clients, both cores.

    Intake does this work and more (the filing, the same-event search, HTTP), so this rate bounds what intake can
    reach on this machine with these settings."""
    os.environ.update(extra_env or {})
    from hotline.core.config import get_settings
    from routing.router import RouteRequest
    from routing.service import build_router

    router = build_router(get_settings())
    router.route_many([RouteRequest(id=str(i), text=t) for i, t in enumerate(texts[:2 * batch])])   # warm-up
    measured = texts[2 * batch:] or texts
    load_before = os.getloadavg()
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(measured), batch):
        router.route_many([RouteRequest(id=str(start + i), text=t)
                           for i, t in enumerate(measured[start:start + batch])])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"texts": len(measured), "batch": batch, "texts_per_second": round(len(measured) / wall, 2),
            "cpu_ms_per_text": round(cpu / len(measured) * 1000, 1),
            "wall_ms_per_text": round(wall / len(measured) * 1000, 1),
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite", help="'sqlite' (a fresh file) or a PostgreSQL URL (reset!)")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--texts", choices=["dev", "letters"], default="dev",
                        help="dev: the development set (short); letters: made-up letters of real length")
    parser.add_argument("--readers", type=int, default=0, help="concurrent readers while the intake runs")
    parser.add_argument("--read-interval", type=float, default=0.1, help="seconds each reader waits between reads")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server (e.g. HOTLINE_EMBED_BATCH_WAIT_MS=0); repeatable")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--router-ceiling", action="store_true",
                        help="only route the same texts in this process (no server, no database), in batches of "
                             "--concurrency: the most intake could reach here with these settings")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.router_ceiling:
        texts = letters(max(args.requests, 400)) if args.texts == "letters" else _texts()
        result = router_ceiling(texts, args.concurrency, extra_env)
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        print(json.dumps(result, ensure_ascii=False, indent=2))
        if args.output:
            args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    result = run(args.database, args.requests, args.concurrency, args.max_seconds, text_kind=args.texts,
                 readers=args.readers, read_interval=args.read_interval, extra_env=extra_env)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
