"""Which way of matching complaints to responsibility-list entries works best? (the design choice in routing/matcher.py)

Every variant is fitted on the knowledge base only and scored on the development set's matter labels:
entry@1 (the exact 权责清单 entry) and kind@1/@3 (the lead kind of unit and level — what decides the department
once the place is known).

Run: .venv/bin/python benchmarks/matcher_variants.py [--dev training_data/dev/routing_dev.jsonl]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.svm import LinearSVC

from hotline.core.config import get_settings
from knowledge_base.index_store import entry_passages
from knowledge_base.kb import load_knowledge_base
from nlp.normalize import clean_for_matching
from routing.history import read_labelled
from routing.matcher import RETRIEVAL_WEIGHT, combine_features, prepare_encoders, text_vectorizer
from routing.service import choose_encoders

RIDGE_LAMBDA = 1.0


def ridge_scores(train: np.ndarray, labels: np.ndarray, n_classes: int, test: np.ndarray) -> np.ndarray:
    x1 = np.hstack([train, np.ones((len(train), 1), dtype=np.float32)])
    targets = np.zeros((len(train), n_classes), dtype=np.float32)
    targets[np.arange(len(train)), labels] = 1
    weights = np.linalg.solve(x1.T @ x1 + RIDGE_LAMBDA * np.eye(x1.shape[1]), x1.T @ targets)
    return np.hstack([test, np.ones((len(test), 1), dtype=np.float32)]) @ weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev", type=Path, default=Path("training_data/dev/routing_dev.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/matcher_variants.json"))
    args = parser.parse_args()
    settings = get_settings()
    kb = load_knowledge_base(settings.city_dir)
    choice = choose_encoders(settings)
    prepare_encoders(kb, choice.encoders)
    rows = entry_passages(kb)
    texts = [r.text for r in rows]
    entry_ids = list(dict.fromkeys(r.entry_id for r in rows))
    pos = {e: i for i, e in enumerate(entry_ids)}
    starts = np.array([i for i, r in enumerate(rows) if i == 0 or rows[i - 1].entry_id != r.entry_id])
    labels = np.array([pos[r.entry_id] for r in rows])
    dev = [r for r in read_labelled(args.dev, category_column=None) if r.extra.get("kb_item") in pos]
    dev_texts = [clean_for_matching(r.text) for r in dev]
    gold = np.array([pos[r.extra["kb_item"]] for r in dev])
    kind = {e: (kb.entries[e].lead, kb.entries[e].level) for e in entry_ids}

    started = time.perf_counter()
    passages = choice.encoders.passages(texts)
    train_queries = choice.encoders.queries(texts)
    dev_queries = choice.encoders.queries(dev_texts)
    embed_s = time.perf_counter() - started

    def report(scores: np.ndarray) -> dict:
        top = scores.argmax(axis=1)
        kinds3 = []
        for row in scores:
            seen: list = []
            for e in np.argsort(-row):
                if kind[entry_ids[e]] not in seen:
                    seen.append(kind[entry_ids[e]])
                if len(seen) == 3:
                    break
            kinds3.append(seen)
        return {"entry@1": round(float((top == gold).mean()), 4),
                "kind@1": round(float(np.mean([kind[entry_ids[t]] == kind[entry_ids[g]] for t, g in zip(top, gold)])), 4),
                "kind@3": round(float(np.mean([kind[entry_ids[g]] in k for g, k in zip(gold, kinds3)])), 4)}

    results: dict = {"embeddings": choice.note, "dev_rows": len(dev), "embedding_seconds": round(embed_s, 1)}
    sims = [np.maximum.reduceat(q @ p.T, starts, axis=1) for q, p in zip(dev_queries, passages)]
    for embedder, sim in zip(choice.encoders.embedders, sims):
        results[f"retrieval {embedder.model_id}"] = report(sim)
    retrieval = sum(sims) / len(sims)
    results["retrieval averaged"] = report(retrieval)
    ridge = ridge_scores(np.hstack(train_queries), labels, len(entry_ids), np.hstack(dev_queries))
    results["ridge on embeddings"] = report(ridge)
    results["retrieval x20 + ridge x20"] = report(20 * retrieval + 20 * ridge)
    vectorizer = text_vectorizer().fit(texts)
    svc_lexical = LinearSVC(C=0.5).fit(vectorizer.transform(texts), labels)
    results["LinearSVC on TF-IDF (baseline)"] = report(svc_lexical.decision_function(vectorizer.transform(dev_texts)))
    svc = LinearSVC(C=0.5).fit(combine_features(vectorizer.transform(texts), train_queries), labels)
    decision = svc.decision_function(combine_features(vectorizer.transform(dev_texts), dev_queries))
    results["LinearSVC on TF-IDF + embeddings"] = report(decision)
    results["LinearSVC + retrieval (chosen)"] = report(decision + RETRIEVAL_WEIGHT * retrieval)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
