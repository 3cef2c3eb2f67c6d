"""How long `hotline train` takes on 10,000 letter-length orders on this machine (issue 10: ≤ 30 minutes).

Run:  .venv/bin/python benchmarks/history_training_time.py [--rows 10000] [--out benchmarks/results/history_training_time.json]

The history is made up, so it can be committed and rerun anywhere: each order is a letter shaped like the real ones
(a title sentence, a greeting to the 书记, the matter told with one of the knowledge base's example complaints placed
in a random 长沙 street, a story, thanks), ~200 characters, labelled with the unit the list gives that matter there.
Every text is different, so no embedding is served from a cache. What is timed is the command a city runs,
`hotline train --history FILE --out DIR`, as a subprocess, end to end (loading the router, embedding, fitting the
ensemble with its out-of-fold stacking and calibration, writing the model). The accuracy it prints is on made-up
text and says nothing about real letters (benchmarks/history_learning.py does that); only the time is the point.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from routing_bench import machine  # noqa: E402

from hotline.core.config import get_settings  # noqa: E402
from knowledge_base.kb import load_knowledge_base  # noqa: E402

GREETINGS = ["尊敬的书记：您好！", "尊敬的市长：您好！", "领导您好，", "尊敬的领导：", ""]
STORIES = ["这个问题已经存在一年多了，我们多次向社区和物业反映，一直没有得到解决，", "附近几百户居民深受其害，老人小孩出行很不方便，",
           "打了好几次电话，每次都说会处理，结果到现在还是老样子，", "大家在业主群里讨论了很久，都不知道该找哪个部门，"]
ENDINGS = ["恳请领导百忙之中关注一下，谢谢！", "希望有关部门尽快处理，谢谢！", "盼复。", "谢谢！"]


def make_history(rows: int, seed: int = 7) -> list[dict]:
    settings = get_settings()
    kb = load_knowledge_base(settings.city_dir)
    with (settings.city_dir / "geo" / "changsha_streets.csv").open(encoding="utf-8-sig", newline="") as handle:
        streets = [(r["street_id"], r["street_name"], r["district_adcode"], r["district_name"])
                   for r in csv.DictReader(handle)]
    rng = random.Random(seed)
    entries = [e for e in kb.entries.values() if e.examples and e.lead != "hotline"]
    out = []
    while len(out) < rows:
        entry = rng.choice(entries)
        street_id, street, adcode, district = rng.choice(streets)
        unit = kb.unit(entry.lead, entry.level, district=adcode, street=street_id)
        if unit is None:
            continue
        text = (f"反映{district}{street}{entry.name}问题。{rng.choice(GREETINGS)}我住在{district}{street}，"
                f"{rng.choice(entry.examples)}。{rng.choice(STORIES)}{rng.choice(STORIES)}{rng.choice(STORIES)}{rng.choice(ENDINGS)}"
                f"（来信{len(out)}）")
        out.append({"text": text, "department": unit.code, "category": "/".join(kb.category_path(entry.category))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "history_training_time.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.jsonl"
        rows = make_history(args.rows)
        history.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        lengths = sorted(len(r["text"]) for r in rows)
        load_before = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hotline.cli", "train", "--history", str(history),
                               "--out", str(Path(tmp) / "model")], cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"hotline train failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        manifest = json.loads((Path(tmp) / "model" / "manifest.json").read_text(encoding="utf-8"))
        size = sum(p.stat().st_size for p in (Path(tmp) / "model").rglob("*") if p.is_file())
    result = {"machine": machine(), "rows": args.rows, "median_chars": lengths[len(lengths) // 2],
              "train_seconds_end_to_end": round(seconds, 1), "target_seconds": 1800,
              "model_bytes": size, "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "manifest_train_seconds": manifest.get("train_seconds"),
              "note": "made-up letters from the knowledge base's examples; the accuracy is not a real-data figure"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
