"""Same-event detection (orders/similar.py): precision and recall of the proposals on hand-written same-event groups.

Run:  HOTLINE_CACHE_DIR=/work/cache-me .venv/bin/python benchmarks/same_event.py
      [--data training_data/same_event/groups.yaml] [--out benchmarks/results/same_event.json]

The whole intake path, as the service runs it: each message, in time order, is routed by the real router (e5 first
when it loads: the vector the router matched with, and the place it found), filed into a fresh SQLite database with
that vector (orders.intake.file_complaint), and searched at once against the open orders filed before it
(orders.similar.find_similar: window HOTLINE_SAME_EVENT_WINDOW_DAYS, at most HOTLINE_SAME_EVENT_LIMIT proposals).
A proposal is right when both messages belong to the same G group (one event); D groups are distractors.
- precision: right proposals / proposals;
- pair recall: right proposals / earlier messages of the same event (each could have been proposed);
- caller recall: messages with an earlier caller of their event that got at least one right proposal / such messages;
for the model's threshold and a sweep, and beside it the text score alone (no place, no time) for comparison.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routing_bench import machine  # noqa: E402

from hotline.core.clock import CITY_TZ  # noqa: E402
from hotline.core.config import get_settings  # noqa: E402
from hotline.core.db import make_engine, session_factory, transaction  # noqa: E402
from hotline.core.migrate import upgrade  # noqa: E402
from orders.intake import file_complaint  # noqa: E402
from orders.service import Actor  # noqa: E402
from orders.similar import Place, find_similar, proposal_threshold, text_score  # noqa: E402
from routing.router import RouteRequest  # noqa: E402
from routing.service import build_router  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [round(0.30 + 0.05 * i, 2) for i in range(13)]   # 0.30 … 0.90


def load(path: Path) -> list[dict]:
    messages = []
    for group in yaml.safe_load(path.read_text(encoding="utf-8")):
        base = dt.datetime.strptime(group["base"], "%Y-%m-%d %H:%M").replace(tzinfo=CITY_TZ)
        for minutes, channel, text in group["calls"]:
            messages.append({"group": group["group"], "event": group["group"].startswith("G"), "channel": channel,
                             "text": text, "at": (base + dt.timedelta(minutes=minutes)).astimezone(dt.UTC)})
    messages.sort(key=lambda m: m["at"])
    return messages


def score(runs: list[dict], threshold: float, limit: int, *, key: str) -> dict:
    proposals = right = wanted = callers = callers_found = wrong_for_distractors = 0
    for run in runs:
        shown = [h for h in run["hits"] if h[key] >= threshold][:limit]
        good = sum(1 for h in shown if h["group"] == run["group"] and run["event"])
        proposals += len(shown)
        right += good
        wanted += run["earlier_same"]
        if not run["event"]:
            wrong_for_distractors += len(shown)
        if run["earlier_same"]:
            callers += 1
            callers_found += good > 0
    return {"threshold": threshold, "proposals": proposals, "right": right,
            "precision": round(right / proposals, 4) if proposals else None,
            "pair_recall": round(right / wanted, 4) if wanted else None,
            "caller_recall": round(callers_found / callers, 4) if callers else None,
            "proposals_for_distractors": wrong_for_distractors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "training_data" / "same_event" / "groups.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "same_event.json")
    args = parser.parse_args()
    settings = get_settings()
    messages = load(args.data)
    started = time.perf_counter()
    router = build_router(settings, load_active_model=False, progress=lambda m: print(m, file=sys.stderr))
    load_s = time.perf_counter() - started
    first = router.matcher.encoders.embedders[0]
    model_id = first.model_id
    items = [router.prepare(RouteRequest(str(i), m["text"])) for i, m in enumerate(messages)]
    started = time.perf_counter()
    routings = router.route_prepared(items, use_corrections=False)
    route_s = time.perf_counter() - started

    runs, search_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/same_event.sqlite3"
        upgrade(url)
        sessions = session_factory(make_engine(url))
        group_of: dict[int, str] = {}
        with transaction(sessions) as session:
            for message, item, routing in zip(messages, items, routings):
                order, _ = file_complaint(session, text=message["text"], channel=message["channel"],
                                          actor=Actor("bench", "system"), routing=routing, routing_model=None,
                                          auto_dispatch=False, text_vector=item["matter_vector"],
                                          vector_model=model_id, now=message["at"])
                group_of[order.id] = message["group"]
                t0 = time.perf_counter()
                hits = find_similar(session, vector=item["matter_vector"], model_id=model_id, place=Place.of(order),
                                    at=message["at"], exclude_order_id=order.id,
                                    window_days=settings.same_event_window_days, limit=10_000, threshold=-10.0)
                search_ms.append((time.perf_counter() - t0) * 1000)
                earlier_same = sum(1 for other_id, group in group_of.items()
                                   if group == message["group"] and other_id != order.id)
                runs.append({"group": message["group"], "event": message["event"],
                             "earlier_same": earlier_same if message["event"] else 0,
                             "place": [order.district_adcode, order.street_id, order.community],
                             "hits": [{"group": group_of[h.order.id], "score": h.score,
                                       "text": round(text_score(h.similarity, model_id), 4)} for h in hits]})
    for run in runs:   # the text score alone is ranked by itself
        run["hits_text"] = sorted(run["hits"], key=lambda h: -h["text"])
    threshold, limit = proposal_threshold(model_id), settings.same_event_limit
    text_runs = [{**r, "hits": r["hits_text"]} for r in runs]
    result = {
        "command": "HOTLINE_CACHE_DIR=/work/cache-me .venv/bin/python benchmarks/same_event.py",
        "machine": machine(), "embedder": model_id, "router_note": router.embedder_note,
        "data": str(args.data.relative_to(ROOT)) if args.data.is_relative_to(ROOT) else str(args.data),
        "messages": len(messages), "events": len({m["group"] for m in messages if m["event"]}),
        "distractors": len({m["group"] for m in messages if not m["event"]}),
        "place_found": {"district": sum(1 for r in runs if r["place"][0]), "street": sum(1 for r in runs if r["place"][1]),
                        "community": sum(1 for r in runs if r["place"][2])},
        "window_days": settings.same_event_window_days, "limit": limit,
        "at_threshold": score(runs, threshold, limit, key="score"),
        # Events with a caller who, at the threshold, saw no earlier caller of the same event.
        "callers_missed_by_event": dict(sorted(Counter(
            r["group"] for r in runs if r["earlier_same"] and not any(
                h["group"] == r["group"] for h in [h for h in r["hits"] if h["score"] >= threshold][:limit])).items())),
        "sweep": [score(runs, t, limit, key="score") for t in SWEEP],
        "text_only_sweep": [score(text_runs, t, limit, key="text") for t in SWEEP],
        "seconds": {"router_load": round(load_s, 1), "routing_all": round(route_s, 2)},
        "search_ms": {"p50": round(statistics.median(search_ms), 2),
                      "max": round(max(search_ms), 2)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k not in ("sweep", "text_only_sweep")}, ensure_ascii=False,
                     indent=1))
    for name in ("sweep", "text_only_sweep"):
        print(name)
        for row in result[name]:
            print(f"  {row['threshold']:.2f}  P={row['precision']}  pairR={row['pair_recall']}  "
                  f"callerR={row['caller_recall']}  n={row['proposals']}  distractor={row['proposals_for_distractors']}")


if __name__ == "__main__":
    main()
