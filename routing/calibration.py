"""Calibrating the router's confidence on a city's labelled calibration set.

The set (`<city>/calibration.jsonl`: text, kb_item, department, district, street) is written apart from the
knowledge base's examples and from the development set. It fixes the softmax temperature (likelihood of the gold
entries) and fits P(the routed department is right) by Platt scaling of one feature, logit(matter probability ×
place confidence) (`router_calibration_features`; the margin is recorded but not used), so a confidence of 0.9
means about nine in ten such orders go to the right unit.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

from nlp.normalize import InputError
from routing.history import LabelledRecord
from routing.matcher import best_temperature, router_calibration_features
from routing.router import Router, RouteRequest, parse_location


def calibrate_router(router: Router, records: list[LabelledRecord], *,
                     progress: Callable[[str], None] = lambda m: None) -> dict:
    matcher, model = router.matcher, router.matcher.model
    usable: list[tuple[LabelledRecord, dict]] = []
    for record in records:
        try:
            request = RouteRequest(str(record.extra.get("id", record.line)), record.text,
                                   parse_location(record.extra.get("location")))
            usable.append((record, router.prepare(request)))
        except (InputError, ValueError):
            continue
    progress(f"calibrating on {len(usable)} labelled complaints")
    texts = [item["match_text"] for _, item in usable]
    vectors = matcher.encoders.queries(texts)
    scores, _, _ = matcher.scores(texts, vectors)
    gold_rows = [i for i, (r, _) in enumerate(usable) if r.extra.get("kb_item") in matcher.entry_pos]
    gold = np.array([matcher.entry_pos[usable[i][0].extra["kb_item"]] for i in gold_rows])
    if len(gold_rows) >= 20:
        model.temperature = best_temperature(scores[gold_rows], gold)

    saved_feedback, saved_calibrator = router.feedback, model.calibrator
    router.feedback, model.calibrator = None, None   # calibrate the bare router, not past corrections
    try:
        outputs = router.route_prepared([item for _, item in usable])
    finally:
        router.feedback = saved_feedback
    features, correct = [], []
    for (record, _), output in zip(usable, outputs):
        if not record.department:
            continue
        s = output["scores"]
        features.append([s["matter_probability"], s["margin"], s["place_confidence"]])
        correct.append(int((output["department"] or {}).get("code") == record.department))
    features, correct = np.array(features), np.array(correct)
    if len(correct) < 20 or correct.min() == correct.max():
        model.calibrator = saved_calibrator
        return {"rows": int(len(correct)), "note": "too few labelled rows to calibrate"}
    model.calibrator = LogisticRegression(C=1.0).fit(router_calibration_features(features), correct)
    model.calibrator_kind = "router"
    model.calibration = {"source": "calibration set", "rows": int(len(correct)),
                         "department_accuracy@1": round(float(correct.mean()), 4),
                         "entry_accuracy@1": round(float((scores[gold_rows].argmax(1) == gold).mean()), 4)
                         if len(gold_rows) else None,
                         "temperature": model.temperature}
    matcher.save_model()
    progress(f"calibration set: department@1 {model.calibration['department_accuracy@1']:.3f} on {len(correct)} rows")
    return model.calibration
