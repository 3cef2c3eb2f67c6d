"""Evaluation of routing on a labelled set: accuracy@k, macro-F1, auto decisions, confusion, calibration."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

CALIBRATION_BINS = 10


@dataclass
class EvalItem:
    expected_department: str | None
    expected_category: str | None
    expected_street: str | None
    output: dict


def _dept_labels(dept: dict | None) -> set[str]:
    if not dept:
        return set()
    return {str(v) for v in (dept.get("code"), dept.get("name")) if v}


def _matches(expected: str | None, dept: dict | None) -> bool:
    return bool(expected) and expected in _dept_labels(dept)


def _category_string(path) -> str:
    return "/".join(path) if isinstance(path, list) else str(path or "")


def _category_matches(expected: str, predicted) -> bool:
    got = _category_string(predicted)
    # A path (大类/子类/细类); a shorter expected path matches its prefix. A 6-digit taxonomy code never matches:
    # outputs carry the path only.
    return bool(got) and (got == expected or got.startswith(expected + "/"))


def calibration_table(confidences: np.ndarray, correct: np.ndarray) -> tuple[float, list[dict]]:
    """Expected calibration error and the reliability table (equal-width bins)."""
    bins, ece = [], 0.0
    # Bin by integer arithmetic: float edges from linspace put 0.7 into the 0.6–0.7 bin.
    index = np.clip(np.floor(np.round(confidences * CALIBRATION_BINS, 9)).astype(int), 0, CALIBRATION_BINS - 1)
    for b in range(CALIBRATION_BINS):
        lo, hi = b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS
        mask = index == b
        if not mask.any():
            continue
        conf, acc = float(confidences[mask].mean()), float(correct[mask].mean())
        ece += mask.sum() / len(confidences) * abs(conf - acc)
        bins.append({"bin": f"{lo:.1f}-{hi:.1f}", "count": int(mask.sum()), "mean_confidence": round(conf, 3),
                     "accuracy": round(acc, 3)})
    return round(float(ece), 4), bins


def largest_share_at(confidences, correct, accuracy: float, *, min_count: int = 10) -> float:
    """The largest share of the orders, taken from the most confident down, that is still at least `accuracy` right
    (at least `min_count` orders, so a handful of lucky ones does not count): what an `auto` threshold on this
    confidence could reach at best. A threshold cannot split orders of equal confidence, so a share ends only where
    the confidence drops. 0.0 when no such share exists."""
    confidences, correct = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
    order = np.argsort(-confidences, kind="stable")
    ranked, ranked_confidence = correct[order], confidences[order]
    running = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    # positions (0-based) where a threshold can fall: the last order of each group of equal confidence
    cuts = np.flatnonzero(np.append(ranked_confidence[1:] < ranked_confidence[:-1], True)) if len(ranked) else []
    reaching = [i for i in cuts if i + 1 >= min_count and running[i] >= accuracy - 1e-12]
    return round(float((reaching[-1] + 1) / len(ranked)), 4) if reaching else 0.0


def evaluate(items: list[EvalItem]) -> dict:
    report: dict = {"count": len(items)}
    with_dept = [i for i in items if i.expected_department]
    if with_dept:
        top1 = np.array([_matches(i.expected_department, i.output.get("department")) for i in with_dept])
        departments_ranked = []
        for i in with_dept:
            ranked = [i.output.get("department")] + [c.get("department") for c in i.output.get("candidates", [])]
            ranked += [{"code": c["label"], "name": c["label"]} for c in i.output.get("department_candidates", [])]
            seen, unique = set(), []
            for d in ranked:
                key = frozenset(_dept_labels(d))
                if key and key not in seen:
                    seen.add(key)
                    unique.append(d)
            departments_ranked.append(unique)
        top3 = np.array([any(_matches(i.expected_department, d) for d in r[:3]) for i, r in zip(with_dept, departments_ranked)])
        ranks = []
        for i, r in zip(with_dept, departments_ranked):
            rank = next((k for k, d in enumerate(r) if _matches(i.expected_department, d)), None)
            ranks.append(0.0 if rank is None else 1.0 / (rank + 1))
        predicted = [(i.output.get("department") or {}).get("code") or "" for i in with_dept]
        expected = [i.expected_department for i in with_dept]
        # Compare by one canonical label: the expected label (code or name) when the prediction matches it.
        canonical_pred = [i.expected_department if ok else p for i, ok, p in zip(with_dept, top1, predicted)]
        decisions = Counter(i.output.get("decision") for i in with_dept)
        auto = np.array([i.output.get("decision") == "auto" for i in with_dept])
        confidences = np.array([float(i.output.get("confidence") or 0.0) for i in with_dept])
        ece, bins = calibration_table(confidences, top1.astype(float))
        confusion = Counter((i.expected_department, p) for i, ok, p in zip(with_dept, top1, predicted) if not ok)
        report["department"] = {
            "count": len(with_dept),
            "accuracy@1": round(float(top1.mean()), 4),
            "accuracy@3": round(float(top3.mean()), 4),
            "mrr": round(float(np.mean(ranks)), 4),
            "macro_f1": round(float(f1_score(expected, canonical_pred, average="macro", zero_division=0)), 4),
            "decisions": dict(decisions),
            "auto_coverage": round(float(auto.mean()), 4),
            "auto_accuracy": round(float(top1[auto].mean()), 4) if auto.any() else None,
            "suggest_accuracy@3": round(float(top3[~auto].mean()), 4) if (~auto).any() else None,
            "ece": ece,
            "calibration": bins,
            "top_confusions": [{"expected": e, "predicted": p, "count": n} for (e, p), n in confusion.most_common(15)],
        }
    with_cat = [i for i in items if i.expected_category]
    if with_cat:
        cat1 = np.array([_category_matches(i.expected_category, i.output.get("category")) for i in with_cat])
        cat3 = []
        for i in with_cat:
            paths = [i.output.get("category")] + [c.get("category") for c in i.output.get("candidates", [])]
            paths += [c["label"] for c in i.output.get("category_candidates", [])]
            unique = list(dict.fromkeys(_category_string(p) for p in paths if p))
            cat3.append(any(_category_matches(i.expected_category, p) for p in unique[:3]))
        report["category"] = {"count": len(with_cat), "accuracy@1": round(float(cat1.mean()), 4),
                              "accuracy@3": round(float(np.mean(cat3)), 4)}
    with_street = [i for i in items if i.expected_street]
    if with_street:
        street_ok = np.array([(i.output.get("jurisdiction") or {}).get("street") == i.expected_street for i in with_street])
        report["street"] = {"count": len(with_street), "accuracy": round(float(street_ok.mean()), 4)}
    return report
