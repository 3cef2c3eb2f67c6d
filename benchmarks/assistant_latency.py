"""Turn latency of the assistant through the app: client → POST /api/v1/chat → Rasa → custom actions → service.

    .venv/bin/python benchmarks/assistant_latency.py                 # ≥ 120 measured turns after a warm-up round
    .venv/bin/python benchmarks/assistant_latency.py --turns 200 --orders 600

Everything is real and on loopback: a fresh embedded SQLite database migrated and seeded with a routed history by
`hotline seed` (orders.seed.seed_history over the real 长沙 router), the app in its own process (uvicorn over
api.app:create_app, the real router and offline models), the real Rasa server (assistant.manage.start_rasa, the
trained model from the cache) whose actions call back into that app. This process is the visitors: one
cookie-keeping httpx client per conversation (a citizen's web session; an official's carries a staff token), one
turn at a time, timed from sending the request to having the whole answer.

The mix, per round (conversation order shuffled with a fixed seed): greetings (你好/谢谢/再见), FAQ questions, status
lookups (by order number + last 4 phone digits of a seeded order, and "my orders"), a complaint form (description,
place read back, confirm, phone — the order is filed — then "my orders"), and an official's indicator questions with
follow-ups. The first round is warm-up (TensorFlow's graphs, jieba, the router's first calls) and is not counted.

Writes benchmarks/results/assistant_latency.json: p50/p90/p99/max per kind of turn and overall, the machine and its
load before and after, and every turn whose answer was not a proper one (busy/fallback/empty), phone numbers masked.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app_server import free_port, start_app, wait_for_app  # noqa: E402

from assistant.manage import model_file, model_is_current, start_rasa, stop_process, wait_until_ready  # noqa: E402
from hotline.core.config import Settings  # noqa: E402
from nlp.pii import mask_pii  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "assistant_latency.json"
TARGET_P50_MS = 300.0
TURN_TIMEOUT_S = 60.0
OFFICIAL, OFFICIAL_PASSWORD = "bench.official", "长沙市12345-bench-official"
ORDER_NO = re.compile(r"工单号[:：]\s*([A-Z]{0,4}\d{8,})")
# Answers that mean the turn did not get a proper answer (its time is still counted: a user waited for it).
NOT_ANSWERED = ("系统暂时繁忙", "助手暂时不可用", "没太听明白")

GREETINGS = [["你好", "谢谢你啊", "再见"], ["您好，在吗", "好的谢谢", "拜拜"], ["早上好", "多谢", "没事了再见"]]
FAQ = ["12345晚上打有人接吗", "投诉一般要几天才有结果", "你们都管哪些事情", "工单办完了怎么评价",
       "周末可以打热线吗", "延期最多能延多久", "物业纠纷12345管不管", "回访的时候怎么打分"]
COMPLAINTS = [
    ("我要投诉，晚上好多摊贩占道摆摊卖烧烤，人行道都过不去", "岳麓区望月湖街道桃子湖路"),
    ("帮我反映一下，小区门口的路灯坏了一个多星期了，晚上黑漆漆的", "雨花区高桥街道"),
    ("我想投诉楼下饭店油烟直排，熏得窗户都不敢开", "开福区四方坪街道"),
    ("举报一下工地半夜还在打桩施工，吵得根本睡不着", "天心区坡子街街道"),
    ("小区垃圾好几天没人收了，臭得不行，帮我投诉一下", "芙蓉区五里牌街道"),
]
INDICATOR_SCRIPTS = [
    ["本月岳麓区投诉多少件", "那雨花区呢", "换成上个月", "按街道拆分"],
    ["按时办结率最低的三个部门", "本月各区诉求量排名", "近7天芙蓉区办结率", "满意率比上个月怎么样"],
    ["上个月满意率是多少", "本月诉求量", "超期的有多少件", "那开福区呢"],
]


def percentile(values: list[float], share: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict:
    return {"turns": len(values), "p50_ms": round(percentile(values, 0.50), 1),
            "p90_ms": round(percentile(values, 0.90), 1), "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1), "mean_ms": round(sum(values) / len(values), 1)}


# -- the conversations ----------------------------------------------------------------------------------------------
class Visitor:
    """One web chat session (its cookie is its identity), optionally an official with a staff token."""

    def __init__(self, base_url: str, log: list[dict], *, token: str | None = None, measured: bool):
        self.client = httpx.Client(base_url=base_url, timeout=TURN_TIMEOUT_S)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.log, self.measured = log, measured

    def say(self, kind: str, message: str) -> str:
        started = time.perf_counter()
        response = self.client.post("/api/v1/chat", json={"message": message}, headers=self.headers)
        elapsed_ms = (time.perf_counter() - started) * 1000
        reply = ("\n".join(m["text"] for m in response.json() if m.get("text"))
                 if response.status_code == 200 else f"HTTP {response.status_code}")
        answered = response.status_code == 200 and bool(reply) and not any(w in reply for w in NOT_ANSWERED)
        self.log.append({"kind": kind, "ms": elapsed_ms, "measured": self.measured, "answered": answered,
                         "message": message, "reply": reply})
        return reply

    def close(self) -> None:
        self.client.close()


def greeting(visitor: Visitor, rng: random.Random, _: dict) -> None:
    for message in rng.choice(GREETINGS):
        visitor.say("greeting", message)


def faq(visitor: Visitor, rng: random.Random, _: dict) -> None:
    for message in rng.sample(FAQ, 2):
        visitor.say("faq", message)


def status(visitor: Visitor, rng: random.Random, data: dict) -> None:
    order_no, last4 = rng.choice(data["orders"])
    visitor.say("status", f"帮我查下工单{order_no}，电话尾号{last4}")
    visitor.say("status", "我的工单处理得怎么样了")


def complaint(visitor: Visitor, rng: random.Random, data: dict) -> None:
    description, place = rng.choice(COMPLAINTS)
    visitor.say("form", description)
    visitor.say("form", place)
    visitor.say("form", "对的")
    filed = visitor.say("form", f"我的电话是139{rng.randrange(10**8):08d}")
    if not ORDER_NO.search(filed):
        visitor.log[-1]["answered"] = False          # the form went somewhere else: no order was filed
    visitor.say("status", "我刚才投诉的处理到哪一步了")


def indicators(visitor: Visitor, rng: random.Random, _: dict) -> None:
    for message in rng.choice(INDICATOR_SCRIPTS):
        visitor.say("indicator", message)


CONVERSATIONS = [(greeting, False), (faq, False), (status, False), (complaint, False), (indicators, True)]


def run_round(base_url: str, rng: random.Random, data: dict, log: list[dict], *, measured: bool) -> None:
    order = list(CONVERSATIONS)
    rng.shuffle(order)
    for conversation, official in order:
        visitor = Visitor(base_url, log, token=data["token"] if official else None, measured=measured)
        try:
            conversation(visitor, rng, data)
        finally:
            visitor.close()


# -- setting up the real parts --------------------------------------------------------------------------------------
def prepare_database(url: str, *, orders: int, env: dict) -> dict:
    """Migrate, seed `orders` routed orders over 30 days (`hotline seed`), add an official; sample seeded orders."""
    from sqlalchemy import select

    from api.auth.staff import create_staff
    from hotline.core.db import make_engine, session_factory, transaction
    from hotline.core.migrate import upgrade
    from orders.models import WorkOrder

    upgrade(url)
    hotline = str(Path(sys.executable).parent / "hotline")
    started = time.perf_counter()
    subprocess.run([hotline, "seed", "--orders", str(orders), "--days", "30"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    seeded_s = time.perf_counter() - started
    engine = make_engine(url)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        create_staff(session, username=OFFICIAL, password=OFFICIAL_PASSWORD, role="official")
    with sessions() as session:
        rows = session.execute(select(WorkOrder.order_no, WorkOrder.caller_phone_last4)
                               .where(WorkOrder.caller_phone_last4.is_not(None), WorkOrder.parent_id.is_(None))
                               .order_by(WorkOrder.id).limit(50)).all()
    engine.dispose()
    return {"orders": [tuple(row) for row in rows], "seed_seconds": round(seeded_s, 1)}


def loopback_stack(work: Path) -> tuple[dict, Settings]:
    """Ports, URLs and environment of an app + Rasa pair on loopback over a fresh SQLite file in `work`; this
    process's environment is set too, so its Settings (Rasa's endpoints, the webhook token) agree with the app's."""
    app_port, rasa_port = free_port(), free_port()
    stack = {"app_port": app_port, "rasa_port": rasa_port, "app_url": f"http://127.0.0.1:{app_port}",
             "rasa_url": f"http://127.0.0.1:{rasa_port}", "database_url": f"sqlite:///{work / 'bench.sqlite3'}"}
    overrides = {
        "HOTLINE_DATABASE_URL": stack["database_url"], "HOTLINE_STATE_DIR": str(work / "state"),
        "HOTLINE_ASSISTANT_API_KEY": "hlk_bench_" + secrets.token_urlsafe(24),
        "HOTLINE_SERVICE_URL": stack["app_url"], "HOTLINE_RASA_URL": stack["rasa_url"],
        # Every visitor here is 127.0.0.1: the relay's per-address limit (30/min) would throttle the benchmark itself.
        "HOTLINE_PUBLIC_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    stack["env"] = {**os.environ, **overrides}
    os.environ.update(overrides)
    return stack, Settings()


@contextmanager
def running_stack(stack: dict, settings: Settings, work: Path):
    """The app and Rasa running and answering for the block (the router and Rasa's model loaded: about a minute);
    both stopped after it. On failure the work folder (Rasa's log, the database) is kept and named; else removed."""
    print("starting the app and Rasa (about a minute) …", flush=True)
    app = rasa = None
    try:
        app = start_app(stack["app_port"], stack["env"])
        rasa = start_rasa(settings, port=stack["rasa_port"], service_url=stack["app_url"], log_file=work / "rasa.log")
        wait_for_app(stack["app_url"], app)
        wait_until_ready(stack["rasa_url"], timeout=600, process=rasa)
        yield
    except BaseException:
        print(f"failed; the Rasa log and the database are in {work}", file=sys.stderr)
        raise
    finally:
        stop_process(rasa)
        stop_process(app)
    shutil.rmtree(work, ignore_errors=True)


def run(*, turns: int, orders: int, seed: int, transcript: Path | None = None) -> dict:
    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="hotline-assistant-bench-"))
    stack, settings = loopback_stack(work)
    app_url, database_url, env = stack["app_url"], stack["database_url"], stack["env"]
    model = model_file(settings)
    model_info = {"file": str(model), "modified": dt.datetime.fromtimestamp(model.stat().st_mtime).isoformat(
        timespec="seconds"), "current_with_training_data": model_is_current(settings)}

    print(f"seeding {orders} orders …", flush=True)
    data = prepare_database(database_url, orders=orders, env=env)
    log: list[dict] = []
    with running_stack(stack, settings, work):
        with httpx.Client(base_url=app_url, timeout=30) as api:
            login = api.post("/api/v1/auth/token", json={"username": OFFICIAL, "password": OFFICIAL_PASSWORD})
            login.raise_for_status()
            data["token"] = login.json()["access_token"]
        rng = random.Random(seed)
        load_before = os.getloadavg()
        run_round(app_url, rng, data, log, measured=False)                  # warm-up
        warmup = len(log)
        started = time.perf_counter()
        while sum(entry["measured"] for entry in log) < turns:
            run_round(app_url, rng, data, log, measured=True)
        wall_s = time.perf_counter() - started
        load_after = os.getloadavg()

    if transcript:
        with transcript.open("w", encoding="utf-8") as handle:
            for entry in log:
                handle.write(json.dumps({**entry, "ms": round(entry["ms"], 1), "message": mask_pii(entry["message"]),
                                         "reply": mask_pii(entry["reply"])}, ensure_ascii=False) + "\n")
    measured = [entry for entry in log if entry["measured"]]
    kinds = sorted({entry["kind"] for entry in measured})
    overall = summary([entry["ms"] for entry in measured])
    return {
        "command": "python benchmarks/assistant_latency.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "gpu": None, "platform": platform.platform(),
                    "python": platform.python_version()},
        "load_average_1_5_15": {"at_start": [round(x, 2) for x in load_at_start],
                                "before_warmup": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in load_after]},
        "setup": {"database": "SQLite (fresh file)", "seeded_orders": orders, "seed_seconds": data["seed_seconds"],
                  "router": "real 长沙 router (offline models)", "rasa_model": model_info,
                  "app": "uvicorn, its own process", "clients": "sequential, one turn at a time"},
        "warmup_turns": warmup,
        "measured_turns": len(measured),
        "wall_seconds": round(wall_s, 1),
        "overall": overall,
        "by_kind": {kind: summary([e["ms"] for e in measured if e["kind"] == kind]) for kind in kinds},
        "target": {"p50_ms": TARGET_P50_MS, "met": overall["p50_ms"] <= TARGET_P50_MS},
        "not_answered": [{"kind": e["kind"], "ms": round(e["ms"], 1), "message": mask_pii(e["message"]),
                          "reply": mask_pii(e["reply"])[:160]} for e in measured if not e["answered"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=120, help="measured turns (at least; whole rounds are run)")
    parser.add_argument("--orders", type=int, default=400, help="seeded orders (30 days)")
    parser.add_argument("--seed", type=int, default=20261121, help="the conversation mix's random seed")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--transcript", type=Path, default=None,
                        help="also write every turn (kind, ms, message, reply; phone numbers masked) as JSON lines")
    args = parser.parse_args()
    result = run(turns=max(args.turns, 100), orders=args.orders, seed=args.seed, transcript=args.transcript)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
