"""How similar does e5 find unrelated complaints, and how similar are re-wordings of the same complaint?

Run: .venv/bin/python benchmarks/correction_similarity.py [--dev training_data/dev/routing_dev.jsonl]
     [--out benchmarks/results/correction_similarity.json]

The correction memory (routing/feedback.py) may only pull a complaint that is a near-duplicate of a corrected one.
This measures, with the router's own query vectors (first encoder, texts cleaned as the router cleans them):
- unrelated pairs: every pair of development complaints about different knowledge-base entries;
- same matter, other incident: pairs about the same entry (other words, other place);
- near-duplicates: each development complaint against re-wordings of itself made here (an agent's template around
  it, particles and punctuation changed, common synonyms swapped, a clause dropped or added, ASR fillers) —
  what a second call or message about the same matter from the same person looks like;
and, for candidate thresholds, how many near-duplicates pass and how many other complaints one correction would
reach. Only figures are written.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from hotline.core.config import get_settings
from nlp.normalize import clean_for_matching
from routing.service import choose_encoders

SYNONYMS = [("很", "非常"), ("好多", "很多"), ("半夜", "深夜"), ("晚上", "夜里"), ("一直", "总是"), ("没有", "没"),
            ("投诉", "反映"), ("麻烦", "请"), ("现在", "目前"), ("已经", "都"), ("我们", "我家"), ("希望", "请求"),
            ("马上", "尽快"), ("不知道", "不晓得"), ("每天", "天天"), ("严重", "厉害")]
TEMPLATES = [("市民来电反映：", "。请相关部门尽快处理。"), ("来电人称", "，要求尽快处理"), ("市民通过微信反映，", ""),
             ("", "。希望有关部门管一管")]
ADDED = ["已经反映过好几次了。", "到现在都没人管。", "麻烦派人来看一下。", "这个问题拖了很久了。"]
FILLERS = ["那个", "就是", "嗯"]


def rewordings(text: str, rng: random.Random) -> list[str]:
    out = []
    prefix, suffix = rng.choice(TEMPLATES)
    out.append(f"{prefix}{text.rstrip('。')}{suffix}")
    out.append(re.sub("[了的啊呀]", "", text).replace("，", " "))
    swapped = text
    for old, new in rng.sample(SYNONYMS, len(SYNONYMS)):
        if old in swapped:
            swapped = swapped.replace(old, new, 1)
    out.append(swapped)
    clauses = [c for c in re.split("(?<=[，。！？；])", text) if c]
    if len(clauses) > 2:
        out.append("".join(clauses[:-1]))
    out.append(text.rstrip("。") + "。" + rng.choice(ADDED))
    pos = rng.randrange(max(1, len(text) // 2))
    out.append(text[:pos] + rng.choice(FILLERS) + text[pos:])
    return [t for t in out if t != text]


def describe(values: np.ndarray) -> dict:
    qs = {f"p{q}": round(float(np.percentile(values, q)), 4) for q in (0, 1, 5, 50, 95, 99, 99.9)}
    return {"pairs": int(values.size), **qs, "max": round(float(values.max()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, default=Path("training_data/dev/routing_dev.jsonl"))
    parser.add_argument("--embedder", choices=["first", "use", "fake"], default="first",
                        help="first: the router's first encoder (e5); use: USE (the fallback); fake: the tests' double")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.dev.open(encoding="utf-8") if line.strip()]
    settings = get_settings()
    if args.embedder == "fake":
        from nlp.embedder import FakeEmbedder

        first = FakeEmbedder(dim=256)
    elif args.embedder == "use":
        from nlp.embedder import load_embedder

        first = load_embedder(settings, kind="use")[0]
    else:
        first = choose_encoders(settings.model_copy(update={"ensemble": False})).encoders.embedders[0]
    suffix = "" if args.embedder == "first" else f"_{args.embedder}"
    args.out = args.out or Path(f"benchmarks/results/correction_similarity{suffix}.json")
    texts = [clean_for_matching(r["text"]) for r in rows]
    vectors = first.embed_queries(texts)
    sims = vectors @ vectors.T
    entries = np.array([r["kb_item"] for r in rows])
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    same = entries[:, None] == entries[None, :]
    unrelated = sims[upper & ~same]
    same_matter = sims[upper & same]

    rng = random.Random(12345)
    owners, variants = [], []
    for i, text in enumerate(texts):
        for v in rewordings(text, rng):
            owners.append(i)
            variants.append(clean_for_matching(v))
    variant_vectors = first.embed_queries(variants)
    near = np.einsum("ij,ij->i", variant_vectors, vectors[np.array(owners)])

    off_diagonal = sims.copy()
    np.fill_diagonal(off_diagonal, -1.0)
    other_matter = np.where(same, -1.0, off_diagonal)
    thresholds = {}
    for t in (0.86, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98):
        reach = (other_matter >= t).sum(axis=1)        # complaints about other entries one correction would reach
        thresholds[str(t)] = {
            "near_duplicates_kept": round(float((near >= t).mean()), 4),
            "unrelated_pairs_above": round(float((unrelated >= t).mean()), 6),
            "reach_per_correction_mean": round(float(reach.mean()), 2),
            "reach_per_correction_max": int(reach.max()),
        }
    result = {"model": first.model_id, "complaints": len(rows), "near_duplicate_variants": len(variants),
              "unrelated": describe(unrelated), "same_matter_other_incident": describe(same_matter),
              "near_duplicates": describe(near), "thresholds": thresholds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
