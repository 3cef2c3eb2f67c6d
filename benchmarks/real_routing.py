"""Routing on REAL citizens' messages (the development half built by ../shared/eval/build_real_sets.py).

Run:  .venv/bin/python benchmarks/real_routing.py --data DIR [--out benchmarks/results/real_routing.json]
      [--plot benchmarks/results/real_routing_reliability.png] [--predictions /tmp/real_pred.jsonl] [--no-speed]

DIR holds routing_dev.jsonl (never committed: the data has no licence). One run reports, with the acceptance rule
(the KIND of the answering body; 街道/镇/乡 are one kind; benchmarks/kind_rule.py mirrors score_kind.py):
- cold routing (knowledge base only, no corrections, no trained model): kind accuracy, kind@3, `auto` accuracy and
  coverage, street/town named right where one answered, per-kind accuracy and what each kind was sent to;
- beside it, TF-IDF + LinearSVC trained on 4/5 of these messages (5-fold) and "always the street/town";
- a reliability diagram (confidence vs kind right) as a PNG;
- how far `auto` could go at best: a confidence refitted on the router's own signals under 5-fold cross-validation,
  read as accuracy at a coverage and the largest coverage still 0.95 right (`auto_ceiling_selective`);
- speed on these real texts: single request p50/p99, batch throughput, and the embedding model's own time.
Only figures are written: no message text leaves DIR.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kind_rule import TERRITORIAL, gold_kind, place_core, same_kind, same_unit_kind, scoring_kind  # noqa: E402
from routing_bench import machine, percentile  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from routing.evaluate import calibration_table, largest_share_at  # noqa: E402
from routing.router import RouteRequest  # noqa: E402
from routing.service import build_router  # noqa: E402

DEFAULT_SCORER = Path(__file__).resolve().parents[2] / "shared" / "eval" / "score_kind.py"


def load(data_dir: Path) -> list[dict]:
    path = data_dir / "routing_dev.jsonl"
    if not path.exists():
        sys.exit(f"{path}: not found (build it with ../shared/eval/build_real_sets.py --out {data_dir})")
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def score(rows: list[dict], outputs: list[dict], kind_of_code: dict[str, str] | None = None) -> dict:
    """The acceptance rule's figures; with `kind_of_code` (department code -> our kind code) also the accuracy by
    the routed unit's own kind, which the rule's name matching cannot see for some official names."""
    n = ok = at3 = auto_n = auto_ok = street_n = street_ok = by_unit_ok = 0
    per_kind: dict[str, Counter] = defaultdict(Counter)
    decisions: Counter = Counter()
    confidences, correct = [], []
    for row, out in zip(rows, outputs):
        want = gold_kind(row["org_type"])
        name = (out.get("department") or {}).get("name")
        good = same_kind(name, want)
        if kind_of_code is not None:
            department = out.get("department") or {}
            unit_kind = "street_office" if department.get("listed") is False else kind_of_code.get(department.get("code"))
            by_unit_ok += same_unit_kind(unit_kind, want)
        n += 1
        ok += good
        cands = [((c.get("department") or {}).get("name") or "") for c in (out.get("candidates") or [])[:3]]
        at3 += good or any(same_kind(c, want) for c in cands)
        decisions[out.get("decision")] += 1
        if out.get("decision") == "auto":
            auto_n += 1
            auto_ok += good
        per_kind[scoring_kind(want)][scoring_kind(name)] += 1
        confidences.append(float(out.get("confidence") or 0.0))
        correct.append(int(good))
        if want in TERRITORIAL and (core := place_core(row["org"])):
            street_n += 1
            street_ok += core in (name or "")
    ece, bins = calibration_table(np.array(confidences), np.array(correct))
    table = {}
    for want, got in sorted(per_kind.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(got.values())
        table[want] = {"n": total, "acc": round(got[want] / total, 3),
                       "sent_to": {k: v for k, v in got.most_common(4) if k != want}}
    figures = {"n": n, "kind_acc": round(ok / n, 4), "kind_at3": round(at3 / n, 4),
            "auto_coverage": round(auto_n / n, 4), "auto_acc": round(auto_ok / auto_n, 4) if auto_n else None,
            "auto_n": auto_n, "street_name_acc": round(street_ok / street_n, 4) if street_n else None,
            "street_n": street_n, "decisions": dict(decisions), "ece": ece, "reliability": bins, "per_kind": table}
    if kind_of_code is not None:
        figures["kind_acc_by_unit_kind"] = round(by_unit_ok / n, 4)
    return figures


def baseline_tfidf_svm(rows: list[dict], folds: int = 5) -> dict:
    """TF-IDF (char 1–3) + LinearSVC trained on 4/5 of the messages, scored on the fifth, same rule."""
    texts = [r["text"] for r in rows]
    labels = np.array([scoring_kind(gold_kind(r["org_type"])) for r in rows])
    accs = []
    for train, test in KFold(folds, shuffle=True, random_state=0).split(texts):
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        model = LinearSVC(C=0.5).fit(vectorizer.fit_transform([texts[i] for i in train]), labels[train])
        accs.append(float((model.predict(vectorizer.transform([texts[i] for i in test])) == labels[test]).mean()))
    return {"kind_acc_mean": round(statistics.mean(accs), 4), "folds": [round(a, 4) for a in accs]}


def rule_ceiling(rows: list[dict], department_names: list[str]) -> dict:
    """The best kind accuracy any router could reach with OUR departments' names under the acceptance rule: a
    message counts only if some department we can name is read as its gold kind. The rule reads names by
    substrings, so every 住房和城乡建设局 and every unit of 宁乡市 contains 乡 and is read as a township, and answering
    bodies outside its list (文化旅游广电局, 信访局, schools …) match no name at all."""
    names = [n for n in department_names if n] + ["某某街道办事处"]   # the street offices we name by place
    reachable = [any(same_kind(name, gold_kind(r["org_type"])) for name in names) for r in rows]
    unreachable = Counter(scoring_kind(gold_kind(r["org_type"])) for r, ok in zip(rows, reachable) if not ok)
    return {"ceiling": round(sum(reachable) / len(rows), 4), "unreachable": sum(unreachable.values()),
            "unreachable_by_kind": dict(unreachable.most_common())}


def selective_curve(confidence: np.ndarray, correct: np.ndarray, coverages=(0.05, 0.1, 0.25, 0.5),
                    target: float = 0.95) -> dict:
    """Accuracy of the most confident fraction of messages, and the largest fraction (of at least 10) that is
    still `target` right: what an `auto` threshold on this confidence could reach at best."""
    ranked = correct[np.argsort(-confidence, kind="stable")]
    running = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    at = {f"acc_at_{c:.0%}": round(float(running[max(int(c * len(ranked)), 1) - 1]), 4) for c in coverages}
    return {**at, f"max_coverage_at_{target}": largest_share_at(confidence, correct, target)}


def selective_ceiling(rows: list[dict], outputs: list[dict], kind_of_code: dict[str, str], folds: int = 5,
                      repeats: int = 3) -> dict:
    """How far `auto` could go on these messages with a better confidence built from what the router already
    knows: a logistic regression on its own signals (matter probability, margin, place confidence, the top
    candidate's score and similarity, the probability of the routed kind of unit, text length, the shipped
    confidence) and on the routed kind of unit itself, fitted on 4/5 of the messages and read on the fifth
    (stratified, `repeats` shuffles averaged). The shipped confidence's own curve is beside it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    signals, kinds, correct = [], [], []
    for row, out in zip(rows, outputs):
        department = out.get("department") or {}
        kind = "street_office" if department.get("listed") is False else kind_of_code.get(department.get("code"), "none")
        candidates = out.get("candidates") or [{}]
        top = candidates[0].get("score", 0.0)
        second = candidates[1].get("score", 0.0) if len(candidates) > 1 else 0.0
        kind_mass = sum(c.get("score", 0.0) for c in candidates
                        if kind_of_code.get((c.get("department") or {}).get("code")) == kind)
        s = out.get("scores") or {}
        signals.append([s.get("matter_probability", 0.0), s.get("margin", 0.0), s.get("place_confidence", 0.0),
                        top, top - second, kind_mass, (candidates[0].get("why") or {}).get("similarity", 0.0),
                        np.log1p(len(row["text"])), float(out.get("confidence") or 0.0)])
        kinds.append(kind)
        correct.append(int(same_kind(department.get("name"), gold_kind(row["org_type"]))))
    signals, correct = np.array(signals), np.array(correct)
    names = sorted(set(kinds))
    with_kind = np.hstack([signals, np.array([[k == name for name in names] for k in kinds], dtype=float)])
    result = {"shipped_confidence": selective_curve(signals[:, -1], correct)}   # its last column
    for label, features in (("signals", signals), ("signals_and_routed_kind", with_kind)):
        held_out = np.zeros(len(correct))
        for seed in range(repeats):
            for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, correct):
                model = LogisticRegression(C=1.0, max_iter=2000).fit(features[train], correct[train])
                held_out[test] += model.predict_proba(features[test])[:, 1] / repeats
        result[f"cv_logistic_{label}"] = selective_curve(held_out, correct)
    return result


def always_territorial(rows: list[dict]) -> float:
    return round(sum(gold_kind(r["org_type"]) in TERRITORIAL for r in rows) / len(rows), 4)


def reliability_plot(bins: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    chinese = [f.name for f in font_manager.fontManager.ttflist if any(k in f.name for k in ("Noto Sans CJK", "WenQuanYi", "Droid Sans Fallback"))]
    if chinese:
        plt.rcParams["font.family"] = chinese[0]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    xs = [b["mean_confidence"] for b in bins]
    ys = [b["accuracy"] for b in bins]
    sizes = [max(12, b["count"]) for b in bins]
    ax.scatter(xs, ys, s=sizes, color="#c0392b", zorder=3, label="bins (area = messages)")
    ax.plot(xs, ys, color="#c0392b")
    for b in bins:
        ax.annotate(str(b["count"]), (b["mean_confidence"], b["accuracy"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("kind of answering body right")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speed(router, texts: list[str], single: int) -> dict:
    encoders = router.matcher.encoders
    for text in texts[:10]:
        router.route(text)
    route_ms, embed_ms = [], []
    for text in texts[:single]:
        started = time.perf_counter()
        router.route(text)
        route_ms.append((time.perf_counter() - started) * 1000)
        match_text = router.prepare(RouteRequest("", text))["match_text"]
        started = time.perf_counter()
        encoders.queries([match_text])
        embed_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    router.route_many([RouteRequest(str(i), t) for i, t in enumerate(texts)])
    batch_s = time.perf_counter() - started
    return {"single_requests": len(route_ms),
            "route_p50_ms": round(percentile(route_ms, 50), 1), "route_p99_ms": round(percentile(route_ms, 99), 1),
            "embedding_only_p50_ms": round(percentile(embed_ms, 50), 1),
            "embedding_only_p99_ms": round(percentile(embed_ms, 99), 1),
            "batch_messages": len(texts), "batch_per_s": round(len(texts) / batch_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding routing_dev.jsonl")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_routing.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/real_routing_reliability.png"))
    parser.add_argument("--predictions", type=Path, default=None,
                        help="also write the routed outputs here (keep it outside the repo: it quotes the messages)")
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER, help="score_kind.py, run as a cross-check")
    parser.add_argument("--single", type=int, default=200, help="single requests timed")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    rows = load(args.data)
    settings = get_settings()
    router = build_router(settings, load_active_model=False, progress=lambda m: print(m, file=sys.stderr))
    router.feedback = None   # cold: the knowledge base alone, no corrections left by anyone
    for embedder in router.matcher.encoders.embedders:
        if hasattr(embedder, "_cache_size"):
            embedder._cache_size = 0   # time real inference, not the repeated-query cache
    outputs = router.route_many([RouteRequest(r["id"], r["text"]) for r in rows])
    result = {"machine": machine(), "embeddings": router.embedder_note, "kb_version": router.kb.version,
              "data": "routing_dev.jsonl (development half)", "cold": score(rows, outputs, {d.code: d.kind for d in router.kb.departments.values()})}
    if not args.no_baseline:
        result["baseline_tfidf_linearsvc_5fold"] = baseline_tfidf_svm(rows)
    result["baseline_always_street_town"] = always_territorial(rows)
    result["rule_ceiling_with_our_names"] = rule_ceiling(rows, [d.name for d in router.kb.departments.values()])
    result["auto_ceiling_selective"] = selective_ceiling(rows, outputs, {d.code: d.kind for d in router.kb.departments.values()})

    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        with args.predictions.open("w", encoding="utf-8") as handle:
            for out in outputs:
                handle.write(json.dumps(out, ensure_ascii=False) + "\n")
        if args.scorer.exists():
            official = subprocess.run([sys.executable, str(args.scorer), str(args.data / "routing_dev.jsonl"),
                                       str(args.predictions)], capture_output=True, text=True, check=True)
            figures = json.loads(official.stdout)
            result["score_kind_py"] = {k: figures[k] for k in ("n", "kind_acc", "kind_at3", "auto_coverage",
                                                               "auto_acc", "street_name_acc")}
    cold = result["cold"]
    reliability_plot(cold["reliability"], args.plot,
                     f"real messages (n={cold['n']}): kind acc {cold['kind_acc']}, ECE {cold['ece']}")
    if not args.no_speed:
        result["speed"] = speed(router, [r["text"] for r in rows], args.single)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():   # earlier runs' records that BENCHMARKS.md cites (speed_runs_*, previous_*) stay
        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        result = {**{k: v for k, v in earlier.items() if k.startswith(("speed_runs_", "previous_"))}, **result}
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
