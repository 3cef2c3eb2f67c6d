"""Server time of the staff screens on a seeded database (issue 13: p95 ≤ 300 ms).

The real router (the configured embedders, HOTLINE_CACHE_DIR), a fresh SQLite database seeded with `--orders`
orders over 30 days (orders.seed.seed_history, as `hotline seed`), one account per role, and the app called
in-process (Starlette's TestClient: no network, so the time is the server's). Each page is asked `--repeats` times;
the order page and the desk's analysis go through different orders and call texts.

    HOTLINE_CACHE_DIR=/work/cache-me .venv/bin/python benchmarks/screen_timings.py --orders 5000
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console
from rich.progress import track
from rich.table import Table
from seeded import seeded_database
from sqlalchemy import select

from api.app import create_app
from api.auth.staff import create_staff
from hotline.core.db import transaction
from orders.models import WorkOrder

RESULTS = Path(__file__).resolve().parent / "results" / "screen_timings.json"
CALLS = ["来电人反映岳麓区望月湖街道某小区门口路灯不亮已经一周了，晚上出行很不安全，请尽快处理。",
         "雨花区东塘街道有个工地每天晚上十二点以后还在施工，噪音太大根本睡不着！！",
         "芙蓉区定王台街道菜市场周边占道经营严重，早上车都开不过去😡",
         "开福区四方坪街道小区里的垃圾站好几天没人清运了，臭气熏天，夏天蚊蝇很多。",
         "天心区坡子街街道有商家把烧烤摊摆到人行道上，油烟很大，希望城管管一管。"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def timed(client: TestClient, method: str, url: str, **kwargs) -> float:
    start = time.perf_counter()
    response = client.request(method, url, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return elapsed


def login(client: TestClient, username: str) -> str:
    client.cookies.clear()
    client.post("/login", data={"username": username, "password": f"{username}-Passw0rd!"})
    page = client.get("/desk" if username == "bench-agent" else "/").text
    marker = 'name="csrf" value="'
    return page.split(marker, 1)[1].split('"', 1)[0] if marker in page else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    console = Console()
    seeded = seeded_database(orders=args.orders, prefix="screen-timings-", console=console)
    settings, router, sessions = seeded.settings, seeded.router, seeded.sessions
    with sessions() as session:
        orders = list(session.scalars(select(WorkOrder.order_no)))
        busiest = Counter(session.scalars(select(WorkOrder.department_code).where(
            WorkOrder.department_code.is_not(None)))).most_common(1)[0][0]
    with transaction(sessions) as session:
        for role in ("agent", "dispatcher", "official", "admin"):
            create_staff(session, username=f"bench-{role}", password=f"bench-{role}-Passw0rd!", role=role)
        create_staff(session, username="bench-handler", password="bench-handler-Passw0rd!", role="handler",
                     department_code=busiest)
    rng = random.Random(7)
    times: dict[str, list[float]] = {}
    with TestClient(create_app(settings, router=router)) as client:
        plan = [("bench-agent", "GET /desk", lambda: ("GET", "/desk", {})),
                ("bench-agent", "POST /desk/analyse", None),
                ("bench-agent", "GET /desk/orders/{no}", lambda: ("GET", f"/desk/orders/{rng.choice(orders)}", {})),
                ("bench-dispatcher", "GET /desk/review", lambda: ("GET", "/desk/review", {})),
                ("bench-handler", "GET /desk/department", lambda: ("GET", "/desk/department", {})),
                ("bench-official", "GET /desk/supervision", lambda: ("GET", "/desk/supervision", {})),
                ("bench-admin", "GET /desk/admin", lambda: ("GET", "/desk/admin?q=噪音", {})),
                (None, "GET /", lambda: ("GET", "/", {}))]
        for user, label, request in plan:
            token = login(client, user) if user else ""
            if request is None:
                def request(token=token):
                    return "POST", "/desk/analyse", {"data": {"csrf": token, "text": rng.choice(CALLS),
                                                              "channel": "hotline"}}
            timed(client, *request()[:2], **request()[2])   # warm-up
            samples = []
            for _ in track(range(args.repeats), description=label, console=console):
                method, path, extra = request()
                samples.append(timed(client, method, path, **extra))
            times[label] = samples
    table = Table(title=f"server time of the staff screens, {args.orders} seeded orders, {args.repeats} requests each")
    for column in ("page", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column)
    results = {}
    for label, samples in times.items():
        results[label] = {"p50_ms": round(statistics.median(samples), 1), "p95_ms": round(percentile(samples, 0.95), 1),
                          "max_ms": round(max(samples), 1), "n": len(samples)}
        table.add_row(label, *(str(results[label][k]) for k in ("p50_ms", "p95_ms", "max_ms")))
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"orders": args.orders, "repeats": args.repeats, "pages": results,
                                   "embeddings": router.embedder_note}, ensure_ascii=False, indent=1) + "\n",
                       encoding="utf-8")
    console.print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
