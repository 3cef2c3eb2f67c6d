"""Learning from history on REAL citizens' messages: our learner against TF-IDF + LinearSVC on the same folds.

Run:  .venv/bin/python benchmarks/history_learning.py --data DIR [--folds 5] [--out benchmarks/results/history_learning.json]

DIR holds what ../shared/eval/build_real_sets.py builds (never committed):
- classify_dev.jsonl: the real 7-class task (TipDM 一级标签);
- routing_dev.jsonl: the answering body read from the official replies; the label is its KIND, scored with the
  acceptance rule (benchmarks/kind_rule.py; 街道/镇/乡 are one kind).
For each task and fold both learners train on k−1 folds and answer the last. The baseline is the plain one the
issue names: char 1–3-gram + word (jieba) TF-IDF → LinearSVC (C=1). Ours is `routing.history_model` as
`hotline train` builds it (stacked lexical, semantic, word-NB and the knowledge base's per-kind probabilities,
calibrated on its own out-of-fold answers). The sentence embeddings and the router's per-kind probabilities are
computed once per text (they use no label). Reported: accuracy per fold and mean, `auto` (calibrated confidence ≥
0.95) accuracy and coverage on the held-out fold, ECE, fit and predict time, model size on disk.
Only figures are written: no message text leaves DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kind_rule import gold_kind, scoring_kind  # noqa: E402
from routing_bench import machine  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from nlp.normalize import clean_for_matching  # noqa: E402
from nlp.segment import Segmenter  # noqa: E402
from routing.history_model import HistoryModel, auto_figures, fit_heads  # noqa: E402
from routing.service import build_router  # noqa: E402


def load_task(data: Path, task: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (data / f"{task}.jsonl").open(encoding="utf-8") if line.strip()]
    if task == "classify_dev":
        return [r["text"] for r in rows], [r["label"] for r in rows]
    return [r["text"] for r in rows], [scoring_kind(gold_kind(r["org_type"])) for r in rows]


def baseline(train_texts, train_y, test_texts, segmenter: Segmenter):
    chars = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    words = TfidfVectorizer(analyzer=segmenter.cut, sublinear_tf=True)
    x_train = sparse.hstack([chars.fit_transform(train_texts), words.fit_transform(train_texts)]).tocsr()
    x_test = sparse.hstack([chars.transform(test_texts), words.transform(test_texts)]).tocsr()
    return LinearSVC(C=1.0).fit(x_train, train_y).predict(x_test)


def run_task(router, texts: list[str], labels: list[str], folds: int, task: str) -> dict:
    cleaned = [clean_for_matching(t) or t for t in texts]
    print(f"{task}: embedding {len(texts)} messages", file=sys.stderr, flush=True)
    vectors, kb_kinds = router.history_features(cleaned)
    y = np.array(labels)
    smallest = min(np.unique(y, return_counts=True)[1])
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0) if smallest >= folds else KFold(folds, shuffle=True, random_state=0)
    segmenter = Segmenter()
    ours, base, confidences, corrects, fit_s, predict_s, sizes = [], [], [], [], [], [], []
    for number, (train, test) in enumerate(splitter.split(cleaned, y), start=1):
        print(f"{task}: fold {number}/{folds}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        model = fit_heads([cleaned[i] for i in train], {"department": [labels[i] for i in train]},
                          [v[train] for v in vectors], router.matcher.encoders.model_id,
                          kb_kinds=kb_kinds[train], kind_keys=router.kind_keys)
        fit_s.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as scratch:
            model.save(Path(scratch))
            sizes.append(model.manifest["size_bytes"])
            model = HistoryModel.load(Path(scratch), encoder_id=router.matcher.encoders.model_id)
        started = time.perf_counter()
        answers = model.predict([cleaned[i] for i in test], [v[test] for v in vectors], kb_kinds=kb_kinds[test])
        predict_s.append((time.perf_counter() - started) / len(test))
        predicted = np.array([a["department"][0][0] for a in answers])
        confidences.extend(a["department"][0][1] for a in answers)
        corrects.extend((predicted == y[test]).tolist())
        ours.append(float((predicted == y[test]).mean()))
        base_predicted = baseline([cleaned[i] for i in train], y[train], [cleaned[i] for i in test], segmenter)
        base.append(float((base_predicted == y[test]).mean()))
        print(f"{task}: fold {number} ours {ours[-1]:.4f} baseline {base[-1]:.4f}", file=sys.stderr, flush=True)
    figures = auto_figures(np.array(confidences), np.array(corrects))
    return {
        "n": len(texts), "labels": int(len(set(labels))), "folds": folds,
        "ours_accuracy": round(float(np.mean(ours)), 4), "ours_folds": [round(a, 4) for a in ours],
        "baseline_tfidf_char_word_linearsvc": round(float(np.mean(base)), 4), "baseline_folds": [round(a, 4) for a in base],
        "gain": round(float(np.mean(ours) - np.mean(base)), 4),
        "ours_held_out": figures,
        "fit_seconds_mean": round(float(np.mean(fit_s)), 1),
        "predict_ms_per_message": round(1000 * float(np.mean(predict_s)), 2),
        "model_size_mb": round(max(sizes) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tasks", default="classify_dev,routing_dev")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/history_learning.json"))
    args = parser.parse_args()
    router = build_router(get_settings(), load_active_model=False, progress=lambda m: print(m, file=sys.stderr))
    result = {"machine": machine(), "embeddings": router.embedder_note, "kb_version": router.kb.version}
    for task in args.tasks.split(","):
        texts, labels = load_task(args.data, task)
        result[task] = run_task(router, texts, labels, args.folds, task)
        print(json.dumps({task: result[task]}, ensure_ascii=False, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
