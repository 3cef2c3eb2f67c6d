"""Routing policy: every threshold, weight and place-confidence constant of the router in one place, with its why,
and the confidence calibration a city fits from its own labelled outcomes (`hotline calibrate`).

Two settings stay in `hotline/core/config.py` because operators change them per deployment: `auto_threshold` (0.95: a
confident order is dispatched without an agent only when about 95 of 100 such orders reach the right unit) and
`cross_duty_min`. Everything here is a property of the routing method, not of a deployment.

Honest confidence. The matcher's calibrator is fitted on short agent records (the city's calibration set). Real
citizens' letters — a title, a greeting, a story, 200–1,000+ characters — are a different input: on the 长沙 real
development half the record-calibrated confidence said 0.95+ where the router was right about two times in three.
So the confidence of a LETTER is recalibrated on letters' outcomes (Platt scaling of the same single feature,
logit(matter probability × place confidence)), per city, in `<city>/policy.yaml`. `hotline calibrate --history`
fits it from a city's past orders; the 长沙 default was fitted on the real development half (figures only).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression

from nlp.letters import split_title
from routing.matcher import router_calibration_features

# -- the matter ------------------------------------------------------------------------------------------------
CANDIDATE_ENTRIES = 12          # entries scored into candidates: enough for 5 distinct departments after dedupe
OUT_OF_SCOPE_ENTRY_WEIGHT = 0.05  # an entry limited to another district keeps a trace of its probability, not 0
TERRITORIAL_OPTION_POSITION = 2  # 0-based: a street/town office is offered third when the first three are bureaus
CROSS_DUTY_MARGIN = 0.15        # two kinds of unit closer than this (and both ≥ cross_duty_min) → joint review
# A multi-issue letter's other part is reported when its own best kind of unit (≠ the main one) holds at least this
# share of its probability: about half the parts of real letters that a cue word opens are story, not a matter.
OTHER_MATTER_MIN_PROBABILITY = 0.5
NOT_ANOTHER_MATTER = frozenset({"hotline"})  # thanks and general suggestions stay with the order, no co-handler

# -- the place (how sure the unit's place part is) ----------------------------------------------------------------
STREET_UNIT_FROM_DISTRICT = 0.6   # a street matter given to a district unit because the street is unknown
UNLISTED_PLACE_CONFIDENCE = 0.5   # the text names a 街道/镇/乡 not on the list: never sure enough for auto
TERRITORY_UNKNOWN_IN_DISTRICT = 0.35  # street matter, district known, street not: the agent must ask
PLACE_UNKNOWN = 0.2               # no place at all
DISTRICT_UNIT_FLOOR = 0.4         # a district unit is right whenever the district is: 0.4 + 0.6 × place confidence
DISTRICT_WITHOUT_SUCH_UNIT = 0.7  # the district has no unit of this kind: the city unit answers
DISTRICT_UNKNOWN_CITY_UNIT = 0.45  # district matter, no district found: the city bureau answers or forwards

# -- what counts as a letter -------------------------------------------------------------------------------------
LETTER_MIN_CHARS = 150   # below this a text reads as an agent's record even without a title


def is_letter(text: str) -> bool:
    """A citizen's letter (title sentence, or long), as opposed to an agent's short record."""
    return bool(split_title(text).title) or len(text) >= LETTER_MIN_CHARS


def calibration_feature(matter_probability, place_confidence) -> np.ndarray:
    """logit(matter probability × place confidence) as a column: the record calibrator's own feature."""
    matter = np.asarray(matter_probability, dtype=float)
    return router_calibration_features(np.column_stack([matter, np.zeros_like(matter),
                                                        np.asarray(place_confidence, dtype=float)]))


@dataclass(frozen=True)
class PlattScaling:
    """P(right) = 1 / (1 + exp(-(slope · x + intercept))), x = logit(matter probability × place confidence)."""

    slope: float
    intercept: float
    source: str = ""
    rows: int = 0
    fitted_on: str = ""

    def __call__(self, matter_probability: float, place_confidence: float) -> float:
        x = float(calibration_feature([matter_probability], [place_confidence])[0, 0])
        return 1.0 / (1.0 + math.exp(-(self.slope * x + self.intercept)))


@dataclass
class CityPolicy:
    """What a city has learnt about its own inputs: today, the calibration of letters."""

    letter_calibration: PlattScaling | None = None
    path: Path | None = None
    notes: dict = field(default_factory=dict)

    def confidence(self, text: str, calibrated: float, matter_probability: float, place_confidence: float) -> float:
        """The confidence to report: a letter's, recalibrated on letters, and never above the record calibration
        (a letter is not easier than the same matter told briefly)."""
        if self.letter_calibration is None or not is_letter(text):
            return calibrated
        return min(calibrated, self.letter_calibration(matter_probability, place_confidence))

    def save(self, path: Path) -> None:
        data = {"letter_calibration": None if self.letter_calibration is None else {
            "slope": round(self.letter_calibration.slope, 6), "intercept": round(self.letter_calibration.intercept, 6),
            "source": self.letter_calibration.source, "rows": self.letter_calibration.rows,
            "fitted_on": self.letter_calibration.fitted_on}, **self.notes}
        header = ("# Routing policy this city learnt from its own outcomes (routing/policy.py). Written by "
                  "`hotline calibrate`; edit by hand only with a note.\n")
        path.write_text(header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def load_city_policy(city_dir: Path) -> CityPolicy:
    path = city_dir / "policy.yaml"
    if not path.exists():
        return CityPolicy()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    letter = data.pop("letter_calibration", None)
    scaling = None
    if letter:
        scaling = PlattScaling(float(letter["slope"]), float(letter["intercept"]), str(letter.get("source", "")),
                               int(letter.get("rows", 0)), str(letter.get("fitted_on", "")))
    return CityPolicy(scaling, path, data)


def fit_letter_calibration(matter_probability: list[float], place_confidence: list[float], correct: list[int], *,
                           source: str) -> PlattScaling:
    """Platt scaling of letters' outcomes; raises ValueError when the outcomes cannot support a fit."""
    if len(correct) < 20 or min(correct) == max(correct):
        raise ValueError(f"{len(correct)} labelled letters with {sum(correct)} right: too few, or all one way, to calibrate")
    model = LogisticRegression(C=1.0).fit(calibration_feature(matter_probability, place_confidence), correct)
    return PlattScaling(float(model.coef_[0][0]), float(model.intercept_[0]), source, len(correct),
                        dt.date.today().isoformat())
