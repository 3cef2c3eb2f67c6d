"""Officials' questions answered with the API's numbers: held-out turns through the whole assistant.

    .venv/bin/python benchmarks/assistant_officials.py [--orders 600] [--output benchmarks/results/assistant_officials.json]

training_data/assistant_officials/heldout.yml holds conversations an official might have (matter breakdowns by
大类/子类/细类, city vitals, follow-up comparisons, rank-and-compare in one question), written for this evaluation
and never trained on. Everything is real and on loopback, as in benchmarks/assistant_latency.py: a fresh SQLite
database seeded with a routed 30-day history (`hotline seed`) plus the bundled 长沙 vitals sample, the app in its own
process, the real Rasa server (trained model from the cache) whose actions call back into the app. Each turn goes
through POST /api/v1/chat with an official's token, in one chat session per conversation.

A turn is right when the answer carries the number(s) the API gives for the query written under it, formatted as
the assistant formats figures (assistant.actions.speech.number): a single figure; both figures of a comparison;
the first group's name and figure of a ranking (and its previous figure when compared); the unit named first in
the 退单 list; every reading over a warning line (or every reading asked for) of a vitals question. The expected
numbers are read from the API with the written query, so a wrong period, filter, ranking or indicator fails.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from assistant_latency import OFFICIAL, OFFICIAL_PASSWORD, loopback_stack, prepare_database, running_stack  # noqa: E402

from assistant.actions.speech import number  # noqa: E402
from assistant.manage import model_file, model_is_current  # noqa: E402
from hotline.core.clock import CITY_TZ  # noqa: E402
from hotline.core.config import Settings  # noqa: E402
from knowledge_base.kb import load_knowledge_base  # noqa: E402
from orders.indicators.catalogue import CATALOGUE  # noqa: E402

QUESTIONS = REPO / "training_data" / "assistant_officials" / "heldout.yml"
RESULTS = REPO / "benchmarks" / "results" / "assistant_officials.json"
TARGET = 0.90
TURN_TIMEOUT_S = 60.0


def load_conversations(path: Path = QUESTIONS) -> list[list[dict]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]


def period_range(name: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end) of the period words the questions use, on the city's calendar (as assistant/actions/periods.py
    documents them: calendar words are whole units, rolling windows end with today)."""
    first = today.replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)
    monday = today - dt.timedelta(days=today.weekday())
    ranges = {
        "本月": (first, next_month),
        "上月": ((first - dt.timedelta(days=1)).replace(day=1), first),
        "本周": (monday, monday + dt.timedelta(days=7)),
        "上周": (monday - dt.timedelta(days=7), monday),
        "今天": (today, today + dt.timedelta(days=1)),
        "近7天": (today - dt.timedelta(days=6), today + dt.timedelta(days=1)),
        "近30天": (today - dt.timedelta(days=29), today + dt.timedelta(days=1)),
        "今年": (dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)),
    }
    return ranges[name]


def category_paths(settings: Settings) -> dict[str, str]:
    """Taxonomy name (大类, 子类 or 细类) → the path prefix the indicators API filters on."""
    paths: dict[str, str] = {}
    for node in load_knowledge_base(settings.city_dir).taxonomy.values():
        for level in (1, 2, 3):
            names = (node.level1, node.level2, node.level3)
            paths.setdefault(names[level - 1], "/".join(names[:level]))
    return paths


def vital_value(reading: dict) -> str:
    value = reading["value"]
    return f"{value:g}{reading.get('unit') or ''}" if isinstance(value, (int, float)) else str(value)


def expected_pieces(api: httpx.Client, expect: dict, *, today: dt.date, paths: dict[str, str]) -> list[str]:
    """What a right answer must contain, read from the API with the written query."""
    if "vitals" in expect:
        spec = expect["vitals"] or {}
        readings = api.get("/api/v1/vitals", params={"area": spec["area"]} if spec.get("area") else {}).json()["vitals"]
        chosen = [r for r in readings if not spec.get("signs") or r["metric"] in spec["signs"]]
        if spec.get("abnormal_only"):
            bad = [r for r in chosen if r["level"] in ("alarm", "warn")]
            return [vital_value(r) for r in bad[:12]] if bad else ["未超过预警线"]
        return [vital_value(r) for r in chosen[:12]]
    name = expect["indicator"]
    unit = CATALOGUE[name].unit
    start, end = period_range(expect.get("period", "本月"), today)
    params: dict = {"start": start.isoformat(), "end": end.isoformat()}
    for key in ("district", "street", "department", "channel"):
        if expect.get(key):
            params[key] = expect[key]
    if expect.get("category"):
        params["category"] = paths[expect["category"]]
    if name == "return_ranking":
        body = api.get(f"/api/v1/indicators/{name}", params=params).json()
        units = [(c.get("label"), c.get("退单", 0)) for c in body["breakdown"].values() if isinstance(c, dict)]
        return [units[0][0], f"{units[0][1]}次"] if units else ["没有退单"]
    if expect.get("by"):
        params.update(by=expect["by"], order=expect.get("order", "desc"), compare=bool(expect.get("compare")))
        if expect.get("top"):
            params["top"] = expect["top"]
        body = api.get(f"/api/v1/indicators/{name}", params=params).json()
        groups = list(body["breakdown"].values())
        if not groups:
            return ["没有可以按"]
        first = groups[0]
        pieces = [first["label"], number(first["value"], unit)]
        if expect.get("compare"):
            pieces.append(f"上一周期{number(first.get('previous'), unit)}")
        return pieces
    if expect.get("compare"):
        body = api.get(f"/api/v1/indicators/{name}", params=params | {"compare": True}).json()
        return [number(body["current"]["value"], unit), number(body["previous"]["value"], unit)]
    body = api.get(f"/api/v1/indicators/{name}", params=params).json()
    return [number(body["value"], unit)] if body.get("value") is not None else ["分母为0"]


def run(*, orders: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hotline-officials-bench-"))
    stack, settings = loopback_stack(work)
    app_url, database_url, env = stack["app_url"], stack["database_url"], stack["env"]
    model = model_file(settings)
    print(f"seeding {orders} orders and the vitals sample …", flush=True)
    prepare_database(database_url, orders=orders, env=env)
    from hotline.core.db import make_engine, session_factory
    from orders.vitals.files import import_sample_if_empty
    engine = make_engine(database_url)
    vitals_rows = import_sample_if_empty(session_factory(engine), settings)
    engine.dispose()
    paths = category_paths(settings)
    conversations = load_conversations()
    turns: list[dict] = []
    with running_stack(stack, settings, work):
        with httpx.Client(base_url=app_url, timeout=TURN_TIMEOUT_S) as api:
            token = api.post("/api/v1/auth/token", json={"username": OFFICIAL, "password": OFFICIAL_PASSWORD}
                             ).raise_for_status().json()["access_token"]
            api.headers["Authorization"] = f"Bearer {token}"
            for conversation in conversations:
                with httpx.Client(base_url=app_url, timeout=TURN_TIMEOUT_S,
                                  headers={"Authorization": f"Bearer {token}"}) as chat:   # one chat session
                    for turn in conversation:
                        started = time.perf_counter()
                        response = chat.post("/api/v1/chat", json={"message": turn["say"]})
                        elapsed_ms = (time.perf_counter() - started) * 1000
                        reply = ("\n".join(m["text"] for m in response.json() if m.get("text"))
                                 if response.status_code == 200 else f"HTTP {response.status_code}")
                        today = dt.datetime.now(CITY_TZ).date()
                        pieces = expected_pieces(api, turn["expect"], today=today, paths=paths)
                        missing = [p for p in pieces if p not in reply]
                        turns.append({"say": turn["say"], "expect": turn["expect"], "right": not missing,
                                      "missing": missing, "reply": reply[:400], "ms": round(elapsed_ms, 1)})
                        print(("ok  " if not missing else "MISS") + f" {turn['say']}", flush=True)
    right = sum(t["right"] for t in turns)
    groups = {"vitals": lambda t: "vitals" in t["expect"],
              "compare": lambda t: bool(t["expect"].get("compare")),
              "matter_breakdown": lambda t: t["expect"].get("by", "").startswith("category")
              or bool(t["expect"].get("category"))}
    return {
        "command": "python benchmarks/assistant_officials.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setup": {"database": "SQLite (fresh file)", "seeded_orders": orders, "vitals_rows": vitals_rows,
                  "rasa_model": {"file": str(model), "current_with_training_data": model_is_current(settings)}},
        "turns": len(turns), "right": right, "accuracy": round(right / len(turns), 4) if turns else None,
        "target": TARGET, "met": bool(turns) and right / len(turns) >= TARGET,
        "by_kind": {kind: {"turns": sum(map(test, turns)), "right": sum(t["right"] for t in turns if test(t))}
                    for kind, test in groups.items()},
        "misses": [t for t in turns if not t["right"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=600, help="seeded orders (30 days)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(orders=args.orders)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "misses"}, ensure_ascii=False, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
