"""Can one re-dispatch correction poison the router? The real 长沙 router on the development set.

Run: .venv/bin/python benchmarks/correction_poisoning.py [--dev training_data/dev/routing_dev.jsonl]
     [--corrections 10] [--out benchmarks/results/correction_poisoning.json]

Needs the built index (`hotline index build`). Corrections go to a throwaway store, never the cache's own. For the
reviewer's case (a 共享单车 complaint re-dispatched to a street office) and for N development complaints each
re-dispatched to another kind of unit, it routes the whole development set before and after that ONE correction
and counts the OTHER complaints whose department changed, plus accuracy@1 and `auto` decisions; it also routes
re-wordings of the corrected complaint (benchmarks/correction_similarity.py) and counts how many follow. Repeated
with the old 0.86 threshold (the matter check still on) to show what each guard does. Only figures are written.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correction_similarity import rewordings  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from routing.feedback import FeedbackMemory, SQLiteFeedbackStore  # noqa: E402
from routing.router import RouteRequest  # noqa: E402
from routing.service import build_router  # noqa: E402

BIKES = ("岳麓区望月湖街道望月湖社区门口的共享单车乱停乱放，几十台车堆在人行道上，行人和轮椅都过不去，"
         "早晚高峰更严重，希望尽快清理")


def _kind(router, output: dict) -> str | None:
    dept = router.kb.departments.get((output["department"] or {}).get("code") or "")
    return dept.kind if dept else None


def route_all(router, texts: list[str]) -> list[dict]:
    return router.route_many([RouteRequest(str(i), t) for i, t in enumerate(texts)])


def summary(outputs: list[dict], rows: list[dict]) -> dict:
    right = [(o["department"] or {}).get("code") == r["department"] for o, r in zip(outputs, rows)]
    autos = [o for o in outputs if o["decision"] == "auto"]
    return {"accuracy@1": round(sum(right) / len(rows), 4), "auto": len(autos),
            "auto_right": sum(r for o, r in zip(outputs, right) if o["decision"] == "auto")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, default=Path("training_data/dev/routing_dev.jsonl"))
    parser.add_argument("--corrections", type=int, default=10, help="development complaints each corrected alone")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/correction_poisoning.json"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.dev.open(encoding="utf-8") if line.strip()]
    texts = [r["text"] for r in rows]
    settings = get_settings()
    scratch = Path(tempfile.mkdtemp(prefix="hotline-poison-"))
    router = build_router(settings, load_active_model=False, feedback_store=SQLiteFeedbackStore(scratch / "none.sqlite3"))
    first = router.matcher.encoders.embedders[0]
    baseline = route_all(router, texts)
    base_codes = [(o["department"] or {}).get("code") for o in baseline]
    street_offices = sorted(c for c, d in router.kb.departments.items() if d.kind == "street_office")

    rng = random.Random(20240521)
    cases = [{"name": "reviewer: 共享单车 → 望月湖街道办事处", "text": BIKES, "department": "430104001", "dev_index": None}]
    for i in rng.sample(range(len(rows)), args.corrections):
        current = router.kb.departments.get(base_codes[i] or "")
        # the correction names another kind of unit: a street office (the poisoning case) or, from a street
        # office, the district's 城管 (or the city's)
        if current is None or current.kind != "street_office":
            target = rng.choice(street_offices)
        else:
            target = next((c for c, d in router.kb.departments.items() if d.kind == "chengguan"
                           and d.district_adcode == current.district_adcode), "CS-CHENGGUAN")
        cases.append({"name": f"dev complaint {rows[i]['id']} → {target}", "text": texts[i], "department": target,
                      "dev_index": i})

    results = []
    for threshold in (None, 0.86):
        for n, case in enumerate(cases):
            memory = FeedbackMemory(SQLiteFeedbackStore(scratch / f"{threshold}-{n}.sqlite3"),
                                    embed=lambda t: first.embed_queries(list(t)), model_id=first.model_id,
                                    dim=first.dim, min_similarity=threshold)
            router.feedback = memory
            router.learn(case["text"], case["department"])
            after = route_all(router, texts)
            others = [k for k in range(len(rows)) if k != case["dev_index"]]
            changed = [k for k in others if (after[k]["department"] or {}).get("code") != base_codes[k]]
            variants = rewordings(case["text"], random.Random(n))
            followed = route_all(router, variants)
            target_kind = router.kb.departments[case["department"]].kind
            results.append({
                "threshold": memory.min_similarity, "case": case["name"],
                "other_complaints": len(others), "changed": len(changed),
                "changed_to_auto": sum(after[k]["decision"] == "auto" for k in changed),
                "before": summary(baseline, rows), "after": summary(after, rows),
                "changed_to_target_kind": sum(_kind(router, after[k]) == target_kind for k in changed),
                "rewordings": len(variants),
                # steered: the correction was applied ("参考改派记录"); to the target kind: the unit is of the corrected
                # kind (a street office needs the complaint's street: without it the district's 12345 branch gets it)
                "rewordings_steered": sum("参考改派记录" in o["explanation"] for o in followed),
                "rewordings_to_target_kind": sum(_kind(router, o) == target_kind for o in followed),
                "rewordings_auto": sum(o["decision"] == "auto" for o in followed),
            })
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    router.feedback = None
    worst = {str(t): max(r["changed"] for r in results if r["threshold"] == t)
             for t in sorted({r["threshold"] for r in results})}
    out = {"model": first.model_id, "dev": str(args.dev), "complaints": len(rows), "worst_changed": worst,
           "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps({"worst_changed": worst}, ensure_ascii=False))


if __name__ == "__main__":
    main()
