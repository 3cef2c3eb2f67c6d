"""Calibrating the router's confidence on a city's labelled calibration set.

The set (`<city>/calibration.jsonl`: text, kb_item, department, district, street) is written apart from the
knowledge base's examples and from the development set. It fixes the softmax temperature (likelihood of the gold
entries) and fits P(the routed department is right) by Platt scaling of one feature, logit(matter probability ×
place confidence) (`router_calibration_features`; the margin is recorded but not used), so a confidence of 0.9
means about nine in ten such orders go to the right unit.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from nlp.normalize import InputError
from routing import policy
from routing.evaluate import largest_share_at
from routing.history import LabelledRecord
from routing.matcher import best_temperature, router_calibration_features
from routing.policy import PlattScaling
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
        # An unlisted territorial office (no code) is never dispatched automatically and cannot equal a listed
        # label: the calibrator measures how often a LISTED unit is right.
        if not record.department or (output["department"] or {}).get("listed") is False:
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


TERRITORIAL_BODIES = ("街道办事处", "镇人民政府", "乡人民政府")


def same_kind_of_body(label: str, department_name: str | None) -> bool:
    """A history that records only the kind of body ("教育局", "街道办事处"): the routed unit is right when its name
    is of that kind; 街道/镇/乡 offices are one territorial kind."""
    if not department_name or not label:
        return False
    if label in TERRITORIAL_BODIES:
        return any(kind in department_name for kind in TERRITORIAL_BODIES)
    return label in department_name


@dataclass(frozen=True)
class LetterCalibration:
    """A city's letter calibration and what it does on the letters it was fitted on: how many the router would
    dispatch on its own (`auto`) at the deployment's threshold and how many of those are right, and the largest
    share of the letters, most confident first, that is at least that threshold right (what any threshold could
    reach at best with this router)."""

    scaling: PlattScaling
    match: str          # "unit" or "kind": what counts as right
    letters: int
    threshold: float
    auto: int
    auto_right: int
    largest_share_at_threshold: float

    def summary(self) -> str:
        auto = (f"{self.auto} of {self.letters} letters would be dispatched automatically at {self.threshold:g} "
                f"({self.auto / self.letters:.2%}), {self.auto_right} of them to the right "
                f"{'kind of ' if self.match == 'kind' else ''}unit")
        reach = (f"the most confident {self.largest_share_at_threshold:.2%} of the letters are at least "
                 f"{self.threshold:g} right" if self.largest_share_at_threshold else
                 f"no 10 or more of the most confident letters are {self.threshold:g} right: the router needs an "
                 "agent for letters")
        return f"{auto}; {reach} (measured on the letters it was fitted on)"


def calibrate_letters(router: Router, records: list[LabelledRecord], *, match: str = "unit",
                      progress: Callable[[str], None] = lambda m: None) -> LetterCalibration:
    """Fit the city's letter calibration (routing/policy.py) on labelled past letters, routed cold (no corrections,
    no trained model, no letter calibration yet), and measure what it does to `auto` on them.
    `match`: "unit" (the label is a department code or name) or "kind" (a kind of body)."""
    saved_history, saved_policy = router.history_model, router.city_policy
    router.history_model = None
    router.city_policy = replace(saved_policy, letter_calibration=None)
    try:
        usable = []
        for record in records:
            if not record.department:
                continue
            try:
                item = router.prepare(RouteRequest(str(record.line), record.text))
            except (InputError, ValueError):
                continue
            if policy.is_letter(item["normalized"]):
                usable.append((record, item))
        progress(f"routing {len(usable)} labelled letters")
        outputs = router.route_prepared([item for _, item in usable], use_corrections=False)
    finally:
        router.history_model, router.city_policy = saved_history, saved_policy
    matter, place, correct = [], [], []
    for (record, _), output in zip(usable, outputs):
        department = output["department"] or {}
        if match == "kind":
            right = same_kind_of_body(record.department, department.get("name"))
        else:
            right = record.department in {department.get("code"), department.get("name")}
        matter.append(output["scores"]["matter_probability"])
        place.append(output["scores"]["place_confidence"])
        correct.append(int(right))
    scaling = policy.fit_letter_calibration(matter, place, correct,
                                            source=f"{len(correct)} labelled letters, match by {match}")
    # What the router decides under the new calibration, without embedding the letters again: a letter calibration
    # only lowers the confidence (the router reports min(record, letter)) and never changes the unit, so a letter
    # is `auto` now when it was `auto` without one and its new confidence (from the scores the router reports, to
    # their 4 decimals) still reaches the threshold.
    threshold = router.settings.auto_threshold
    calibrated = replace(saved_policy, letter_calibration=scaling)
    confidences = [round(calibrated.confidence(item["normalized"], output["confidence"], m, p), 4)
                   for (_, item), output, m, p in zip(usable, outputs, matter, place)]
    auto = [right for right, output, confidence in zip(correct, outputs, confidences)
            if output["decision"] == "auto" and confidence >= threshold]
    return LetterCalibration(scaling, match, len(correct), threshold, len(auto), int(sum(auto)),
                             largest_share_at(confidences, correct, threshold))
