"""Routing benchmark: single-request latency, batch throughput, peak RSS, and trained model vs. a TF-IDF baseline.

Run: .venv/bin/python benchmarks/routing_bench.py [--dev training_data/dev/routing_dev.jsonl] [--out benchmarks/results/routing.json]

Everything runs in this process on this machine; nothing is sent anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from hotline.core.config import get_settings
from nlp.normalize import clean_for_matching
from routing.history import read_labelled
from routing.history_model import fit_heads
from routing.router import RouteRequest
from routing.service import build_router


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "torch_threads": get_settings().torch_threads}


def latency(router, texts: list[str], warmup: int = 20) -> dict:
    for text in texts[:warmup]:
        router.route(text)
    route_ms, embed_ms = [], []
    encoders = router.matcher.encoders
    for text in texts:
        started = time.perf_counter()
        router.route(text)
        route_ms.append((time.perf_counter() - started) * 1000)
        match_text = clean_for_matching(text)
        started = time.perf_counter()
        encoders.queries([match_text])
        embed_ms.append((time.perf_counter() - started) * 1000)
    return {
        "requests": len(texts),
        "route_p50_ms": round(percentile(route_ms, 50), 1), "route_p99_ms": round(percentile(route_ms, 99), 1),
        "route_mean_ms": round(statistics.mean(route_ms), 1),
        "embedding_only_p50_ms": round(percentile(embed_ms, 50), 1),
        "embedding_only_p99_ms": round(percentile(embed_ms, 99), 1),
    }


def throughput(router, texts: list[str], batch_size: int = 256) -> dict:
    requests = [RouteRequest(str(i), t) for i, t in enumerate(texts)]
    started = time.perf_counter()
    router.route_many(requests, batch_size=batch_size)
    route_s = time.perf_counter() - started
    started = time.perf_counter()
    cleaned = [clean_for_matching(t) for t in texts]
    for i in range(0, len(cleaned), batch_size):
        router.matcher.encoders.queries(cleaned[i:i + batch_size])
    embed_s = time.perf_counter() - started
    return {"complaints": len(texts), "batch_size": batch_size,
            "route_per_s": round(len(texts) / route_s, 1), "embedding_only_per_s": round(len(texts) / embed_s, 1)}


def history_vs_baseline(router, dev_path: Path) -> dict:
    """Train on the knowledge base's example complaints as a 'history' (label = 细类 path); test on the
    independently written development set. Both models see exactly the same split."""
    kb = router.kb
    train_texts, train_labels = [], []
    for entry in kb.active_entries():
        label = "/".join(kb.category_path(entry.category))
        for example in entry.examples:
            train_texts.append(clean_for_matching(example))
            train_labels.append(label)
    dev = [r for r in read_labelled(dev_path) if r.category]
    test_texts = [clean_for_matching(r.text) for r in dev]
    test_labels = [r.category for r in dev]

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    baseline = LinearSVC(C=0.5).fit(vectorizer.fit_transform(train_texts), train_labels)
    baseline_pred = baseline.predict(vectorizer.transform(test_texts))
    baseline_s = time.perf_counter() - started

    started = time.perf_counter()
    encoders = router.matcher.encoders
    model = fit_heads(train_texts, {"category": train_labels}, encoders.queries(train_texts), encoders.model_id)
    predictions = model.predict(test_texts, encoders.queries(test_texts))
    ours = [p["category"][0][0] for p in predictions]
    ours_top3 = [[label for label, _ in p["category"][:3]] for p in predictions]
    ours_s = time.perf_counter() - started

    def acc(pred):
        return round(float(np.mean([p == t for p, t in zip(pred, test_labels)])), 4)

    def acc_level(pred, depth):
        return round(float(np.mean([p.split("/")[:depth] == t.split("/")[:depth] for p, t in zip(pred, test_labels)])), 4)

    return {
        "train_rows": len(train_texts), "test_rows": len(test_texts), "labels": len(set(train_labels)),
        "baseline_tfidf_linearsvc": {"accuracy@1": acc(baseline_pred), "大类_accuracy": acc_level(baseline_pred, 1),
                                     "macro_f1": round(float(f1_score(test_labels, baseline_pred, average="macro", zero_division=0)), 4),
                                     "seconds": round(baseline_s, 1)},
        "hotline_train": {"accuracy@1": acc(ours), "accuracy@3": round(float(np.mean([t in p for p, t in zip(ours_top3, test_labels)])), 4),
                          "大类_accuracy": acc_level(ours, 1),
                          "macro_f1": round(float(f1_score(test_labels, ours, average="macro", zero_division=0)), 4),
                          "seconds": round(ours_s, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev", type=Path, default=Path("training_data/dev/routing_dev.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/routing.json"))
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    started = time.perf_counter()
    router = build_router(get_settings(), load_active_model=False, progress=print)
    load_s = time.perf_counter() - started
    for embedder in router.matcher.encoders.embedders:
        if hasattr(embedder, "_cache_size"):
            embedder._cache_size = 0   # measure real inference, not the repeated-query cache
    router.feedback = None             # corrections left by earlier runs must not change what is measured
    texts = [r.text for r in read_labelled(args.dev)]
    single_texts = (texts * (args.requests // max(1, len(texts)) + 1))[: args.requests]
    # Feedback corrections from earlier runs would change nothing about speed, but keep results comparable.
    result = {
        "machine": machine(), "embeddings": router.embedder_note, "router_load_s": round(load_s, 1),
        "latency_single": latency(router, single_texts),
        "throughput_batch": throughput(router, texts),
    }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["history_vs_baseline"] = history_vs_baseline(router, args.dev)
    result["peak_rss_mb_after_training"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
