"""Evaluate the assistant's NLU on the held-out set (training_data/assistant_heldout, never trained on).

    .venv/bin/python benchmarks/assistant_nlu.py                      # held-out: intents, entities, FAQ answers
    .venv/bin/python benchmarks/assistant_nlu.py --cross-validation   # + `rasa test nlu --cross-validation`

Parses every held-out utterance with the trained model (in the Rasa venv, through rasa's Agent), then measures:
- intent accuracy (retrieval intents count as `faq`), and FAQ answer accuracy (the ResponseSelector's sub-intent);
- entity precision/recall/F1, exact span + type, on the entities the actions receive: RegexEntityExtractor and DIET
  both emit entities, so they are merged as the actions do (duplicates dropped; of two overlapping entities of the
  same type the regex one — a dictionary or number pattern — is kept); and the share of correctly found entities
  whose value (after synonyms) is the expected canonical value.
Writes benchmarks/results/assistant_heldout.json (figures + every error) and prints a summary.
With --cross-validation, rasa's intent/entity reports go to benchmarks/results/assistant_nlu_cv/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.datacheck import Example, read_nlu_examples, read_synonyms  # noqa: E402
from assistant.manage import (  # noqa: E402
    HELDOUT_DATA,
    RASA_VENV,
    TRAINING_DATA,
    model_file,
    model_is_current,
    rasa_env,
    rasa_executable,
    training_paths,
)
from hotline.core.config import get_settings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"

# Runs inside the Rasa venv: parse each text of the JSON list on stdin, write the parses as JSON to argv[2]
# (a file: rasa prints to stdout itself).
PARSER = r"""
import asyncio, json, sys, time, logging
logging.disable(logging.WARNING)
from rasa.core.agent import Agent

async def main(model, target):
    agent = Agent.load(model)
    texts = json.load(sys.stdin)
    await agent.parse_message("你好")          # warm-up: the first parse builds TensorFlow's graphs
    out = []
    for text in texts:
        started = time.perf_counter()
        parsed = await agent.parse_message(text)
        parsed["_ms"] = (time.perf_counter() - started) * 1000
        out.append(parsed)
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(out, handle, ensure_ascii=False, default=str)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def parse_all(texts: list[str], model: Path) -> list[dict]:
    settings = get_settings()
    rasa_executable()
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "parses.json"
        run = subprocess.run([str(RASA_VENV / "bin" / "python"), "-c", PARSER, str(model), str(target)],
                             input=json.dumps(texts), capture_output=True, text=True, env=rasa_env(settings),
                             cwd=settings.assistant_dir)
        if run.returncode != 0:
            raise SystemExit(f"parsing failed:\n{run.stderr[-4000:]}")
        return json.loads(target.read_text(encoding="utf-8"))


def merged_entities(parsed: dict) -> list[dict]:
    """The entities as the actions see them: one per span and type, regex first when two of a type overlap."""
    ranked = sorted(parsed.get("entities", []),
                    key=lambda e: (e.get("extractor") != "RegexEntityExtractor", -(e["end"] - e["start"])))
    kept: list[dict] = []
    for entity in ranked:
        if any(k["entity"] == entity["entity"] and k["start"] < entity["end"] and entity["start"] < k["end"]
               for k in kept):
            continue
        kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])


def evaluate(examples: list[Example], parses: list[dict], synonyms: dict[str, str]) -> dict:
    intents_right = faq_right = faq_total = 0
    tp = fp = fn = values_right = 0
    per_type: dict[str, Counter] = {}
    confusions: Counter = Counter()
    errors: list[dict] = []
    for example, parsed in zip(examples, parses):
        predicted = parsed["intent"]["name"]
        if predicted == example.top_intent:
            intents_right += 1
        else:
            confusions[(example.top_intent, predicted)] += 1
            errors.append({"text": example.text, "expected": example.intent, "predicted": predicted,
                           "confidence": round(parsed["intent"]["confidence"], 3)})
        if example.top_intent == "faq":
            faq_total += 1
            selected = (parsed.get("response_selector", {}).get("faq", {}).get("response", {})
                        .get("intent_response_key"))
            if selected == example.intent:
                faq_right += 1
            else:
                errors.append({"text": example.text, "expected_answer": example.intent, "selected": selected})
        expected = {(e.start, e.end, e.entity): e for e in example.entities}
        found = {(e["start"], e["end"], e["entity"]): e for e in merged_entities(parsed)}
        for key in expected.keys() | found.keys():
            counts = per_type.setdefault(key[2], Counter())
            if key in expected and key in found:
                tp += 1
                counts["tp"] += 1
                want = synonyms.get(expected[key].value, expected[key].value)
                if str(found[key]["value"]) == want:
                    values_right += 1
                else:
                    errors.append({"text": example.text, "entity": key[2], "span": example.text[key[0]:key[1]],
                                   "expected_value": want, "value": found[key]["value"]})
            elif key in found:
                fp += 1
                counts["fp"] += 1
                errors.append({"text": example.text, "unexpected_entity": key[2],
                               "span": example.text[key[0]:key[1]], "extractor": found[key].get("extractor")})
            else:
                fn += 1
                counts["fn"] += 1
                errors.append({"text": example.text, "missed_entity": key[2], "span": example.text[key[0]:key[1]]})

    def f1(c: Counter) -> dict:
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(score, 4),
                "support": c["tp"] + c["fn"]}

    latencies = sorted(p["_ms"] for p in parses)
    return {
        "utterances": len(examples),
        "intent_accuracy": round(intents_right / len(examples), 4),
        "faq_answer_accuracy": round(faq_right / faq_total, 4) if faq_total else None,
        "entities": f1(Counter(tp=tp, fp=fp, fn=fn)),
        "entity_value_accuracy": round(values_right / tp, 4) if tp else None,
        "entities_by_type": {name: f1(c) for name, c in sorted(per_type.items())},
        "intent_confusions": [{"expected": a, "predicted": b, "count": n} for (a, b), n in confusions.most_common()],
        "parse_ms_p50": round(latencies[len(latencies) // 2], 1),
        "parse_ms_p95": round(latencies[int(len(latencies) * 0.95)], 1),
        "errors": errors,
    }


def cross_validate(folds: int, out: Path, config: Path) -> dict:
    """`rasa test nlu --cross-validation` on the training data; keeps the reports, not the plots."""
    settings = get_settings()
    scratch = settings.cache_dir / "assistant" / "cv"
    shutil.rmtree(scratch, ignore_errors=True)
    # `rasa test nlu --nlu` takes one folder: the training examples and the generated vocabulary, side by side.
    data = scratch / "nlu"
    data.mkdir(parents=True)
    for folder in (p for p in training_paths(settings) if p.name != "core"):
        for source in folder.glob("*.yml"):
            shutil.copy(source, data / f"{folder.name}-{source.name}")
    started = time.perf_counter()
    subprocess.run([str(rasa_executable()), "test", "nlu", "--cross-validation", "--folds", str(folds),
                    "--config", str(config.resolve()), "--nlu", str(data), "--out", str(scratch / "reports"),
                    "--no-plot"], cwd=settings.assistant_dir, env=rasa_env(settings), check=True)
    scratch = scratch / "reports"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"folds": folds, "config": str(config.resolve().relative_to(REPO)), "examples": len(
        read_nlu_examples(TRAINING_DATA / "nlu")), "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "seconds": round(time.perf_counter() - started), "reports": {}}
    for report in sorted(scratch.glob("*_report.json")):
        data = json.loads(report.read_text())
        (out / report.name).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        overall = {k: data[k] for k in ("accuracy", "macro avg", "weighted avg", "micro avg") if k in data}
        summary["reports"][report.stem] = overall
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="trained model (default: the cache's)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS / "assistant_heldout.json")
    parser.add_argument("--cross-validation", action="store_true", help="also run rasa's NLU cross-validation")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--config", type=Path, default=None,
                        help="pipeline for the cross-validation (default: assistant/config.yml)")
    parser.add_argument("--cv-out", type=Path, default=RESULTS / "assistant_nlu_cv",
                        help="folder for the cross-validation reports")
    parser.add_argument("--cv-only", action="store_true", help="skip the held-out evaluation")
    args = parser.parse_args()

    settings = get_settings()
    if not args.cv_only:
        heldout(args, settings)
    if args.cross_validation or args.cv_only:
        summary = cross_validate(args.folds, args.cv_out, args.config or settings.assistant_dir / "config.yml")
        print(json.dumps(summary, ensure_ascii=False, indent=2))


def heldout(args: argparse.Namespace, settings) -> None:
    model = args.model or model_file(settings)
    if not model.exists():
        raise SystemExit(f"no trained model at {model}: run `hotline assistant train`")
    current = args.model is not None or model_is_current(settings)
    if not current:
        print("warning: the trained model is older than the training data (hotline assistant train)", file=sys.stderr)
    examples = read_nlu_examples(args.heldout)
    training_texts = {e.text for e in read_nlu_examples(TRAINING_DATA / "nlu")}
    leaked = [e.text for e in examples if e.text in training_texts]
    if leaked:
        raise SystemExit(f"held-out utterances found in the training data: {leaked}")
    synonyms = read_synonyms(settings.assistant_dir / "generated" / "vocabulary.yml")
    parses = parse_all([e.text for e in examples], model)
    result = evaluate(examples, parses, synonyms)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, no GPU"
    result["model"] = str(model)
    result["model_matches_training_data"] = current
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    entities = result["entities"]
    print(f"held-out: {result['utterances']} utterances; intent accuracy {result['intent_accuracy']:.4f}; "
          f"FAQ answers {result['faq_answer_accuracy']:.4f}; entities P {entities['precision']:.4f} "
          f"R {entities['recall']:.4f} F1 {entities['f1']:.4f} (values right {result['entity_value_accuracy']}); "
          f"parse p50 {result['parse_ms_p50']} ms → {args.out}")
    for name, scores in result["entities_by_type"].items():
        print(f"  {name:<11} P {scores['precision']:.3f} R {scores['recall']:.3f} F1 {scores['f1']:.3f} "
              f"(n={scores['support']})")


if __name__ == "__main__":
    main()
