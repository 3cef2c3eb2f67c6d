"""How many tokens of a complaint e5 needs to read: real kind accuracy and routing time per query limit.

Routes the real development messages (routing_dev.jsonl, built by ../shared/eval/build_real_sets.py) cold, once per
limit, with e5's query truncation set to each value (list entries and the index are unchanged), and prints the
scores of `real_routing.score` with the wall time of the whole batch. The default of HOTLINE_E5_MAX_QUERY_TOKENS
was chosen from this.

    .venv/bin/python benchmarks/query_tokens.py --data /path/to/realdata 256 128 96 64 48
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from real_routing import load, score  # noqa: E402
from routing_bench import machine  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from routing.router import RouteRequest  # noqa: E402
from routing.service import build_router  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding routing_dev.jsonl")
    parser.add_argument("limits", type=int, nargs="+", help="query token limits to try")
    args = parser.parse_args()
    rows = load(args.data)
    router = build_router(get_settings(), load_active_model=False)
    router.feedback = None
    kinds = {d.code: d.kind for d in router.kb.departments.values()}
    e5 = next(e for e in router.matcher.encoders.embedders if hasattr(e, "max_query_tokens"))
    e5._cache_size = 0   # every message really embedded
    results = {"machine": machine(), "messages": len(rows), "by_limit": {}}
    for limit in args.limits:
        e5.max_query_tokens = limit
        started = time.perf_counter()
        outputs = router.route_many([RouteRequest(r["id"], r["text"]) for r in rows])
        seconds = time.perf_counter() - started
        figures = score(rows, outputs, kinds)
        results["by_limit"][limit] = {**{k: figures[k] for k in ("kind_acc", "kind_at3", "auto_coverage", "auto_acc",
                                                                 "street_name_acc", "ece")},
                                      "seconds": round(seconds, 1)}
        print(limit, json.dumps(results["by_limit"][limit]), flush=True)
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
