"""A model trained on the exported demo history routes the NEXT month: `auto` coverage and accuracy.

Run:  .venv/bin/python benchmarks/seeded_history_model.py [--orders 6000] [--days 60] [--out benchmarks/results/seeded_history_model.json]

The demo history (`hotline seed`: knowledge-base example complaints placed in random streets, routed by the real
router, with simulated outcomes — mis-dispatches returned and re-dispatched) is seeded over `--days` days into a
scratch SQLite database. Orders of the first half are exported as `hotline train --from-orders` reads them
(closed, with the unit that finally handled them) and a model is trained; orders created in the second half are
routed with it and scored against the unit holding them. This is the issue's acceptance check for a *synthetic*
history: the labels are mostly the router's own, so the figure says the model learns a city's practice and is
calibrated, not how it fares on real letters (benchmarks/history_learning.py does that).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routing_bench import machine  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from hotline.core.db import make_engine, session_factory, transaction  # noqa: E402
from hotline.core.migrate import upgrade  # noqa: E402
from orders.importer import export_training_rows  # noqa: E402
from orders.models import WorkOrder  # noqa: E402
from orders.seed import seed_history  # noqa: E402
from routing.history import LabelledRecord  # noqa: E402
from routing.history_model import HistoryModel, train_history_model  # noqa: E402
from routing.router import RouteRequest  # noqa: E402
from routing.service import build_router  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=6000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/seeded_history_model.json"))
    args = parser.parse_args()
    settings = get_settings()
    router = build_router(settings, load_active_model=False, progress=lambda m: print(m, file=sys.stderr))
    router.feedback = None
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/seed.sqlite3"
        upgrade(url)
        sessions = session_factory(make_engine(url))
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        cutoff = now - dt.timedelta(days=args.days // 2)
        started = time.perf_counter()
        seed_history(router, sessions, orders=args.orders, days=args.days, now=now)
        seed_s = time.perf_counter() - started
        with transaction(sessions) as session:
            earlier = export_training_rows(session, before=cutoff)
            later = session.execute(select(WorkOrder.text, WorkOrder.department_code)
                                    .where(WorkOrder.created_at >= cutoff, WorkOrder.parent_id.is_(None),
                                           WorkOrder.department_code.is_not(None))).all()
    records = [LabelledRecord(line=n, text=r["text"], department=r["department"]) for n, r in enumerate(earlier, 1)]
    started = time.perf_counter()
    model, _ = train_history_model(records, router=router, source_hash="seeded",
                                   progress=lambda m: print(m, file=sys.stderr, flush=True))
    train_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        model.save(Path(scratch))
        size = model.manifest["size_bytes"]
        router.history_model = HistoryModel.load(Path(scratch), encoder_id=router.matcher.encoders.model_id,
                                                 kb_hash=router.kb.content_hash, kind_keys=router.kind_keys)
    outputs = router.route_many([RouteRequest(str(i), text) for i, (text, _) in enumerate(later)])
    truth = np.array([code for _, code in later])
    predicted = np.array([(o["department"] or {}).get("code") for o in outputs])
    auto = np.array([o["decision"] == "auto" for o in outputs])
    right = predicted == truth
    result = {
        "machine": machine(), "embeddings": router.embedder_note,
        "seeded_orders": args.orders, "days": args.days, "seed_seconds": round(seed_s, 1),
        "trained_on": len(records), "train_seconds": round(train_s, 1), "model_size_mb": round(size / 1e6, 2),
        "next_period_orders": len(later),
        "accuracy": round(float(right.mean()), 4),
        "auto_coverage": round(float(auto.mean()), 4),
        "auto_accuracy": round(float(right[auto].mean()), 4) if auto.any() else None,
        "held_out_folds": model.manifest["metrics_out_of_fold"]["department"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
