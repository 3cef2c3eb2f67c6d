"""The router: 条块结合、以块为主 — find the place, find the matter, name the owning unit at the right level."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hotline.core.config import Settings
from knowledge_base.gazetteer import Gazetteer
from knowledge_base.kb import KnowledgeBase
from knowledge_base.models import Department, ResponsibilityEntry
from nlp.entities import extract_entities
from nlp.letters import matter_text, other_matter_texts
from nlp.normalize import check_text, normalize, strip_boilerplate
from nlp.pii import mask_pii
from nlp.segment import Segmenter
from nlp.tags import analyse
from routing import policy
from routing.feedback import FeedbackMemory
from routing.geocode import GazetteerGeocoder, GeocodeResult, GeoPoint
from routing.matcher import KBMatcher, kind_index

log = logging.getLogger(__name__)
# A correction steers a complaint only when the router sees the same matter in it: the entry the correction was
# about (the router's at the time, or the corrected one) is among the complaint's best entries, or the router
# names the same kind of unit it named for the corrected complaint.
CORRECTION_MATTER_ENTRIES = 5
# How much a correction pulls the (kind, level) distribution, from the near-duplicate threshold up to identical
# text. At least 0.6: the corrected kind then leads by ≥ 0.2, so the pull alone never reads as 职责交叉.
CORRECTION_PULL = (0.6, 0.85)


@dataclass
class RouteRequest:
    id: str
    text: str
    location: GeoPoint | None = None


def parse_location(value: object) -> GeoPoint | None:
    """`location` as {"lat", "lng", "datum"?} (datum wgs84 by default) or None; raises ValueError with a reason."""
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict):
        raise ValueError("location must be an object {\"lat\": …, \"lng\": …, \"datum\": \"wgs84\"|\"gcj02\"|\"bd09\"}")
    try:
        lat, lng = float(value["lat"]), float(value["lng"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("location needs numeric lat and lng") from None
    datum = str(value.get("datum", "wgs84")).lower().replace("-", "")
    if datum not in {"wgs84", "gcj02", "bd09"}:
        raise ValueError(f"location datum must be wgs84, gcj02 or bd09, got {value.get('datum')!r}")
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError("location lat/lng out of range")
    return GeoPoint(lat, lng, datum)  # type: ignore[arg-type]


@dataclass(frozen=True)
class UnlistedUnit:
    """A territorial office the matter belongs to that is not on the city's list: the 街道/镇/乡 the text names
    when the gazetteer does not know it, or "the street/town of the place" when no place was found. It has no
    code, so nothing is dispatched to it automatically: the agent confirms the office (or asks where it is)."""

    name: str
    kind: str
    level: str = "street"
    code: None = None


def _dept(d: Department | UnlistedUnit | None) -> dict | None:
    if d is None:
        return None
    if isinstance(d, UnlistedUnit):
        return {"code": None, "name": d.name, "level": d.level, "listed": False}
    return {"code": d.code, "name": d.name, "level": d.level}


def resolve_unit(kb: KnowledgeBase, kind: str, level: str, geo: GeocodeResult) -> tuple[Department | None, str, float]:
    """(unit, how it was resolved, how sure the place part is) for a kind of unit at a level."""
    district = geo.district["adcode"] if geo.district else None
    street = geo.street["id"] if geo.street else None
    place_conf = geo.confidence
    if level == "street":
        unit = kb.unit(kind, "street", street=street) if street else None
        if unit:
            return unit, f"属地：{geo.street['name']}", place_conf
        unit = kb.unit(kind, "district", district=district) if district else None
        if unit:
            how = "该类单位无街镇级，交区级单位" if street else "街镇未知，交区级单位"
            return unit, how, place_conf if street else place_conf * policy.STREET_UNIT_FROM_DISTRICT
        # 以块为主: a street/town matter stays with the territorial office even when the list cannot name it.
        if geo.unlisted_street:
            return (UnlistedUnit(geo.unlisted_street, kind), f"属地：{geo.unlisted_street}（不在本市街镇名录，请核实）",
                    policy.UNLISTED_PLACE_CONFIDENCE)
        where = geo.district["name"] if geo.district else ""
        how = "街镇未知，请询问事发街道（乡镇）" if district else "地点未知，请询问事发街道（乡镇）"
        return (UnlistedUnit(f"{where}事发地街道办事处（乡镇人民政府，待核实）", kind), how,
                policy.TERRITORY_UNKNOWN_IN_DISTRICT if district else policy.PLACE_UNKNOWN)
    if level == "district":
        unit = kb.unit(kind, "district", district=district) if district else None
        if unit:
            floor = policy.DISTRICT_UNIT_FLOOR
            return unit, f"属地：{geo.district['name']}", min(1.0, floor + (1 - floor) * place_conf)
        unit = kb.unit(kind, "city")
        if district and unit:
            return unit, f"{geo.district['name']}无该单位，交市级", policy.DISTRICT_WITHOUT_SUCH_UNIT
        return unit, "区县未知，交市级单位", policy.DISTRICT_UNKNOWN_CITY_UNIT
    return kb.unit(kind, "city"), "市级事项", 1.0



KIND_LABEL = "kind:"   # a history model label that names a kind of unit (and its level), not one unit


class Router:
    def __init__(self, *, kb: KnowledgeBase, gazetteer: Gazetteer, geocoder: GazetteerGeocoder, matcher: KBMatcher,
                 settings: Settings, feedback: FeedbackMemory | None = None, history_model=None,
                 embedder_note: str = "", city_policy: policy.CityPolicy | None = None):
        self.kb = kb
        # What the city learnt about its own inputs (letters' calibration); none: the matcher's calibration alone.
        self.city_policy = city_policy or policy.CityPolicy()
        self.gazetteer = gazetteer
        self.geocoder = geocoder
        self.matcher = matcher
        self.settings = settings
        self.feedback = feedback
        self.history_model = history_model
        self.embedder_note = embedder_note
        words = set(gazetteer.user_words())
        for entry in kb.entries.values():
            words.update(entry.keywords)
        for dept in kb.departments.values():
            words.update(dept.aliases)
        self.segmenter = Segmenter(words)
        self._entry_words = {e.id: set(e.keywords) | set(self.segmenter.content_words(e.name)) for e in kb.entries.values()}
        # Per entry position, computed once: its kind of unit and the district it is limited to.
        self._kinds, self._kind_of_entry = kind_index(kb, matcher.model.entry_ids)
        # entries × kinds, 1 where the entry's unit is of that kind: entry probabilities @ this = per-kind ones
        self._entry_kind = np.zeros((len(self._kind_of_entry), len(self._kinds)))
        self._entry_kind[np.arange(len(self._kind_of_entry)), self._kind_of_entry] = 1.0
        self._entry_scope = np.array([kb.entries[e].scope for e in matcher.model.entry_ids])

    # -- place → unit -----------------------------------------------------------------------------------------
    def resolve_unit(self, kind: str, level: str, geo: GeocodeResult) -> tuple[Department | None, str, float]:
        return resolve_unit(self.kb, kind, level, geo)

    # -- routing -------------------------------------------------------------------------------------------
    def prepare(self, request: RouteRequest) -> dict:
        text = check_text(request.text, max_chars=self.settings.max_text_chars)
        normalized = normalize(text)
        # Matching reads the title and the head of the letter, without greetings and thanks (nlp/letters.py);
        # the order keeps the whole text.
        stripped = strip_boilerplate(normalized)
        match_text = matter_text(stripped or normalized)
        # A history model reads the whole cleaned letter, as it was trained (`clean_for_matching`).
        return {"request": request, "normalized": normalized, "match_text": match_text,
                "history_text": stripped or normalized, "other_texts": other_matter_texts(stripped or normalized)}

    def route(self, text: str, location: GeoPoint | None = None, *, order_id: str = "") -> dict:
        return self.route_many([RouteRequest(order_id, text, location)])[0]

    def route_many(self, requests: Sequence[RouteRequest], *, progress: Callable[[int], None] | None = None,
                   batch_size: int = 256, use_corrections: bool = True) -> list[dict]:
        """Route a batch; raises InputError for the first unusable text (see `route_prepared`)."""
        return self.route_prepared([self.prepare(r) for r in requests], progress=progress, batch_size=batch_size,
                                   use_corrections=use_corrections)

    def route_prepared(self, items: Sequence[dict], *, progress: Callable[[int], None] | None = None,
                       batch_size: int = 256, use_corrections: bool = True) -> list[dict]:
        """Route what `prepare` returned (callers that sort out bad input first need not clean texts twice).
        All texts of a slice are embedded in one call: the embedder sorts them by length, so padding is small
        (fp32 e5: 40.0 complaints/s against 20.3 for slices of 32 in arrival order; BENCHMARKS.md).
        Each item gets its matter's vector (the first encoder's) as `item["matter_vector"]`."""
        results: list[dict] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            # A multi-issue letter's other parts are matched in the same call (one embedding batch).
            others = [t for c in chunk for t in c.get("other_texts", ())]
            vectors, (probs, similarity, best_rows) = self._match([c["match_text"] for c in chunk] + others)
            other_probs = probs[len(chunk):]
            vectors = [v[:len(chunk)] for v in vectors]
            probs, similarity, best_rows = probs[:len(chunk)], similarity[:len(chunk)], best_rows[:len(chunk)]
            next_other = 0
            history = None
            if self.history_model:
                history = self.history_model.predict([c["history_text"] for c in chunk], vectors,
                                                     kb_kinds=self._kind_probabilities(probs))
            for i, item in enumerate(chunk):
                # The first encoder's vector of the matter, for the caller that stores it (same-event search at
                # intake): the text is not embedded a second time.
                item["matter_vector"] = vectors[0][i]
                count = len(item.get("other_texts", ()))
                results.append(self._decide(item, probs[i], similarity[i], best_rows[i],
                                            [v[i] for v in vectors], history[i] if history else None,
                                            use_corrections=use_corrections,
                                            other_probs=other_probs[next_other:next_other + count]))
                next_other += count
            if progress:
                progress(len(chunk))
        return results

    @property
    def kind_keys(self) -> list[tuple[str, str]]:
        """The (kind of unit, level) pairs the router's probabilities are spread over."""
        return list(self._kinds)

    def _kind_probabilities(self, entry_probs: np.ndarray) -> np.ndarray:
        return entry_probs @ self._entry_kind

    def history_features(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """What a history model reads besides the text: the sentence embeddings of the matter and the router's
        probability for each kind of unit (`kind_keys`)."""
        vectors, (probs, _, _) = self._match([self.prepare(RouteRequest("", t))["match_text"] for t in texts])
        return vectors, self._kind_probabilities(probs)

    def _match(self, match_texts: list[str]):
        """The texts' embeddings and the matcher's (entry probabilities, similarity, best example rows)."""
        vectors = self.matcher.encoders.queries(match_texts)
        return vectors, self.matcher.entry_probabilities(match_texts, vectors)

    def _decide(self, item: dict, probs: np.ndarray, similarity: np.ndarray, best_rows: np.ndarray,
                vectors: list[np.ndarray], history: dict | None, *, use_corrections: bool = True,
                other_probs: np.ndarray | None = None) -> dict:
        request: RouteRequest = item["request"]
        normalized = item["normalized"]
        geo = self.geocoder.geocode(normalized, request.location)
        signals = analyse(normalized)
        entry_ids = self.matcher.model.entry_ids
        district_name = geo.district["name"] if geo.district else None

        probs, kind_sums = self._in_place(probs, district_name)

        # Department distribution: entries → (kind, level) → the unit for this place.
        ranked_entries = np.argsort(-probs)
        order = ranked_entries[:policy.CANDIDATE_ENTRIES]
        key_prob: dict[tuple[str, str], float] = defaultdict(float, zip(self._kinds, map(float, kind_sums)))

        correction = self._correction_for(vectors[0], ranked_entries, key_prob) if use_corrections else None
        feedback_note = bare = None
        if correction:
            bare = self._bare_confidence(key_prob, geo)
            # Pull towards the unit a person chose for the same complaint told again: the closer, the stronger.
            low, high = CORRECTION_PULL
            floor = self.feedback.min_similarity
            pull = low + (high - low) * min(1.0, max(0.0, (correction.similarity - floor) / max(1e-6, 1 - floor)))
            for key in key_prob:
                key_prob[key] *= 1 - pull
            key_prob[(correction.kind, correction.level)] += pull
            feedback_note = {"id": correction.id, "similarity": round(correction.similarity, 3),
                             "department_code": correction.department_code, "text": correction.text[:80]}

        ranked_keys = sorted(key_prob.items(), key=lambda kv: -kv[1])
        top_key, top_p = ranked_keys[0]
        second_p = ranked_keys[1][1] if len(ranked_keys) > 1 else 0.0

        # The best entry behind the chosen kind of unit explains the matter.
        top_kind = self._kinds.index(top_key) if top_key in self._kinds else -1
        top_entry_pos = next((p for p in ranked_entries if self._kind_of_entry[p] == top_kind), order[0])
        if correction and correction.entry_id in self.kb.entries:
            top_entry_pos = self.matcher.entry_pos.get(correction.entry_id, top_entry_pos)
        top_entry = self.kb.entries[entry_ids[top_entry_pos]]
        unit, resolution, place_conf = self.resolve_unit(top_key[0], top_key[1], geo)
        confidence = self.city_policy.confidence(normalized, self.matcher.calibrated(top_p, top_p - second_p, place_conf),
                                                 top_p, place_conf)
        if correction and not (bare[0] == top_key and bare[1] >= self.settings.auto_threshold):
            # A correction alone never makes a decision `auto`: only a router already sure of that unit keeps it.
            confidence = min(confidence, self.settings.auto_threshold - 0.01)
        confidence = round(float(confidence), 4)

        # Candidates are ranked by their kind of unit's total probability first (several entries may speak for the
        # same unit), then by the entry's own: +0.005 kind@3 on the real development half.
        order = sorted(order, key=lambda pos: (-kind_sums[self._kind_of_entry[pos]], -probs[pos]))
        candidates = self._candidates(order, probs, similarity, best_rows, geo, normalized)
        if correction:
            # `unit` is the corrected kind of unit in this place (top_key follows the correction).
            if unit and all(c["department"] and c["department"]["code"] != unit.code for c in candidates):
                candidates.insert(0, {"department": _dept(unit), "kb_item": None, "category": [],
                                      "score": round(float(top_p), 4), "why": {"feedback": feedback_note}})
        candidates = self._with_a_territorial_option(self._dedupe_departments(candidates, unit))

        reasons = []
        decision = "suggest"
        if top_entry.disputed:
            decision, reasons = "review", ["权责清单标注为职责交叉/有争议事项，转联合研判"]
        elif geo.outside_city:
            decision, reasons = "review", [f"诉求地点疑似不在本市（{geo.outside_city}）"]
        elif len(ranked_keys) > 1 and second_p >= self.settings.cross_duty_min and top_p - second_p < policy.CROSS_DUTY_MARGIN:
            decision, reasons = "review", ["两个部门的职责都可能涉及，转联合研判"]
        elif (confidence >= self.settings.auto_threshold and not (geo.ambiguous and top_key[1] != "city")
              and not isinstance(unit, UnlistedUnit)):
            decision = "auto"
        else:
            reasons.append("置信度不足以自动派单，请坐席确认" if confidence < self.settings.auto_threshold else "地点有歧义，请核实")

        output = {
            "id": request.id,
            "category": self.kb.category_path(top_entry.category),
            "category_code": top_entry.category,
            "department": _dept(unit),
            "jurisdiction": {"district": district_name, "street": geo.street["name"] if geo.street else None,
                             "community": geo.community},
            "confidence": confidence,
            "decision": decision,
            "decision_reasons": reasons,
            "kb_item": {"id": top_entry.id, "name": top_entry.name},
            "time_limit_days": top_entry.time_limit_days,
            "scores": {"matter_probability": round(float(top_p), 4), "margin": round(float(top_p - second_p), 4),
                       "place_confidence": round(float(place_conf), 4)},
            "co_handlers": self._co_handlers(top_entry, geo),
            "candidates": candidates[: self.settings.top_k],
            "tags": signals.tags,
            "urgency": signals.urgency,
            "diversion": signals.diversion,
            "sentiment": signals.sentiment,
            "address": {**geo.to_dict(), "resolution": resolution, "question": self._question(geo, unit)},
            "entities": self._masked_entities(normalized),
            "explanation": self._explain(top_entry, unit, resolution, geo, candidates, feedback_note),
        }
        output["other_matters"] = self._other_matters(other_probs, top_key, unit, geo, district_name)
        if output["other_matters"] and decision == "auto":
            # One order, several matters: the agent decides whether the others get co-handlers or orders of their own.
            output["decision"] = "suggest"
            output["decision_reasons"] = [f"来信还反映了其他事项（{'、'.join(m['kb_item']['name'] for m in output['other_matters'])}），"
                                          "请坐席确认是否增派协办单位"]
        output["decided_by"] = "knowledge_base"
        if history:
            output = self._apply_history(output, history, geo)
            if "department" in history:
                output["decided_by"] = self.history_model.model_id
        return output

    def _in_place(self, probs: np.ndarray, district_name: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(entry probabilities, probability per kind of unit) for a complaint in this district: entries that apply
        to one district only do not apply elsewhere."""
        probs = probs.copy()
        if district_name:
            probs[(self._entry_scope != "全市") & (self._entry_scope != district_name)] *= policy.OUT_OF_SCOPE_ENTRY_WEIGHT
        probs /= probs.sum()
        return probs, np.bincount(self._kind_of_entry, weights=probs, minlength=len(self._kinds))

    def _other_matters(self, other_probs: np.ndarray | None, main_key: tuple[str, str], main_unit,
                       geo: GeocodeResult, district_name: str | None) -> list[dict]:
        """A multi-issue letter's other matters, each the best entry of its part, when its kind of unit differs from
        the main matter's and the part is clear enough (policy.OTHER_MATTER_MIN_PROBABILITY): offered to the agent as
        co-handler candidates, never dispatched on their own."""
        found: list[dict] = []
        seen = {main_key}
        for part_probs in other_probs if other_probs is not None else ():
            probs, kind_sums = self._in_place(part_probs, district_name)
            best_kind = int(np.argmax(kind_sums))
            key = self._kinds[best_kind]
            if key in seen or kind_sums[best_kind] < policy.OTHER_MATTER_MIN_PROBABILITY:
                continue
            seen.add(key)
            pos = next(p for p in np.argsort(-probs) if self._kind_of_entry[p] == best_kind)
            entry = self.kb.entries[self.matcher.model.entry_ids[pos]]
            unit, resolution, _ = self.resolve_unit(key[0], key[1], geo)
            if key[0] in policy.NOT_ANOTHER_MATTER or (unit and main_unit and unit.code and unit.code == main_unit.code):
                continue
            found.append({"kb_item": {"id": entry.id, "name": entry.name},
                          "category": self.kb.category_path(entry.category), "department": _dept(unit),
                          "probability": round(float(kind_sums[best_kind]), 4), "resolution": resolution})
        return found

    def _correction_for(self, vector: np.ndarray, ranked_entries: np.ndarray, key_prob: dict):
        """The closest active correction of a near-duplicate complaint about the same matter, or None."""
        if not self.feedback:
            return None
        nearest = self.feedback.nearest(vector)
        if not nearest:
            return None
        entry_ids = self.matcher.model.entry_ids
        top_entries = {entry_ids[p] for p in ranked_entries[:CORRECTION_MATTER_ENTRIES]}
        bare_key = max(key_prob.items(), key=lambda kv: kv[1])[0]
        for c in nearest:
            about = {c.original_entry_id, c.entry_id} - {None}
            if about & top_entries or bare_key in {(c.original_kind, c.original_level), (c.kind, c.level)}:
                return c
        return None

    def _bare_confidence(self, key_prob: dict, geo: GeocodeResult) -> tuple[tuple[str, str], float]:
        """The router's own (kind, level) and confidence before any correction."""
        ranked = sorted(key_prob.values(), reverse=True)
        key = max(key_prob.items(), key=lambda kv: kv[1])[0]
        second = ranked[1] if len(ranked) > 1 else 0.0
        _, _, place_conf = self.resolve_unit(key[0], key[1], geo)
        return key, float(self.matcher.calibrated(ranked[0], ranked[0] - second, place_conf))

    def _candidates(self, order, probs, similarity, best_rows, geo, normalized) -> list[dict]:
        words = set(self.segmenter.content_words(normalized))
        out = []
        for pos in order:
            entry = self.kb.entries[self.matcher.model.entry_ids[pos]]
            unit, resolution, _ = self.resolve_unit(entry.lead, entry.level, geo)
            row = best_rows[pos]
            matched = self.matcher.rows[row].text if row >= 0 else None
            out.append({
                "department": _dept(unit),
                "kb_item": {"id": entry.id, "name": entry.name},
                "category": self.kb.category_path(entry.category),
                "score": round(float(probs[pos]), 4),
                "why": {"similarity": round(float(similarity[pos]), 3), "matched_example": matched,
                        "shared_words": sorted(words & self._entry_words[entry.id])[:8],
                        "level": entry.level, "resolution": resolution, "boundary": entry.boundary or None},
            })
        return out

    @staticmethod
    def _dedupe_departments(candidates: list[dict], chosen: Department | None) -> list[dict]:
        """One candidate per department (best first), the chosen department first."""
        seen, out = set(), []
        ordered = sorted(candidates, key=lambda c: 0 if chosen and c["department"] and c["department"]["code"] == chosen.code else 1)
        for c in ordered:
            # Unlisted territorial offices have no code: they are told apart by name.
            key = (c["department"]["code"], c["department"]["name"]) if c["department"] else None
            if key in seen:
                continue
            seen.add(key)
            out.append(c)
        return out

    @staticmethod
    def _question(geo: GeocodeResult, unit) -> str | None:
        """What the agent asks the caller when the place decides the unit and is not known well enough."""
        if geo.question or not isinstance(unit, UnlistedUnit):
            return geo.question
        if geo.unlisted_street:
            return f"请问事发地是否在本市？{geo.unlisted_street}不在本市街镇名录"
        where = geo.district["name"] if geo.district else ""
        return f"请问事发地点在{where}哪个街道（乡镇）、哪个社区（村）？"

    @staticmethod
    def _with_a_territorial_option(candidates: list[dict]) -> list[dict]:
        """条块结合: when the first three candidates are all bureaus (条) and a street/town office (块) is among the
        rest, it is offered third, so the agent always sees the territorial choice next to the functional ones."""
        def territorial(c: dict) -> bool:
            return bool(c["department"]) and c["department"].get("level") == "street"

        shown = policy.TERRITORIAL_OPTION_POSITION
        if len(candidates) <= shown or any(territorial(c) for c in candidates[:shown + 1]):
            return candidates
        later = next((i for i, c in enumerate(candidates) if territorial(c)), None)
        if later is None:
            return candidates
        return candidates[:shown] + [candidates[later]] + [c for i, c in enumerate(candidates[shown:], shown) if i != later]

    def _co_handlers(self, entry: ResponsibilityEntry, geo: GeocodeResult) -> list[dict]:
        out = []
        for kind in entry.co_handlers:
            unit, _, _ = self.resolve_unit(kind, entry.level if kind != "street_office" else "street", geo)
            if unit and unit.kind == kind:
                out.append(_dept(unit))
        return out

    @staticmethod
    def _masked_entities(text: str) -> dict:
        entities = extract_entities(text)
        for key in ("phones", "id_numbers"):
            for span in entities[key]:
                span["text"] = span["value"] = mask_pii(span["text"])
        return {k: [s["value"] for s in v] for k, v in entities.items()}

    @staticmethod
    def _explain(entry, unit, resolution, geo, candidates, feedback_note) -> str:
        top = candidates[0]["why"] if candidates else {}
        parts = [f"事项：{entry.name}（{entry.id}，{ {'city': '市级', 'district': '区县级', 'street': '街镇级'}[entry.level]}，时限{entry.time_limit_days}个工作日）"]
        if top.get("matched_example"):
            parts.append(f"相似诉求：“{top['matched_example'][:40]}”（相似度{top['similarity']}）")
        if top.get("shared_words"):
            parts.append("共同关键词：" + "、".join(top["shared_words"]))
        parts.append(f"{resolution} → {unit.name if unit else '未确定'}")
        if feedback_note:
            parts.append(f"参考改派记录（相似度{feedback_note['similarity']}）")
        return "；".join(parts)

    def _apply_history(self, output: dict, history: dict, geo: GeocodeResult) -> dict:
        """With a trained model the category (and department, when trained) come from the city's own label space."""
        if "category" in history:
            label, prob = history["category"][0]
            output["kb_category"] = output["category"]
            output["category"] = [p for p in str(label).split("/") if p]
            output["category_confidence"] = round(float(prob), 4)
            output["category_candidates"] = [{"label": name, "score": round(float(p), 4)} for name, p in history["category"][:5]]
        if "department" in history:
            kb_dept = output["department"]
            # The model already weighs the knowledge base's opinion (its per-kind probabilities are one of its
            # inputs) and its confidence is calibrated on held-out orders: no second blend here.
            blended = history["department"]
            label, prob = blended[0]
            known, unplaced = self.unit_for_history_label(label, geo)
            output["kb_department"] = kb_dept
            output["department"] = _dept(known) if known else {"code": label, "name": label, "level": None}
            output["confidence"] = round(float(prob), 4)
            output["department_candidates"] = []
            for candidate_label, candidate_prob in blended[:5]:
                unit = self.unit_for_history_label(candidate_label, geo)[0]
                output["department_candidates"].append({"label": candidate_label,
                                                        "name": unit.name if unit else candidate_label,
                                                        "score": round(float(candidate_prob), 4)})
            if output["decision"] != "review":
                output["decision"] = "auto" if prob >= self.settings.auto_threshold and not unplaced else "suggest"
        return output

    def history_label(self, label: str) -> str:
        """The label a history model learns for a department label of the city's history: the kind of unit (and
        its level) when the label names one of our units below the city, so 岳麓区城管局 and 开福区城管局 teach one
        thing (the complaint's place picks the unit); the label itself otherwise."""
        known = self._find_department(label)
        if known is not None and known.level != "city":
            return f"{KIND_LABEL}{known.kind}@{known.level}"
        return label

    def unit_for_history_label(self, label: str, geo: GeocodeResult) -> tuple[Department | UnlistedUnit | None, bool]:
        """(the unit in this complaint's place, whether the place left it unsure) for a history model's label: a
        kind of unit, or a unit the history names somewhere (the same kind of unit in THIS place owns it)."""
        if label.startswith(KIND_LABEL):
            named = None
            kind, _, level = label[len(KIND_LABEL):].rpartition("@")
        else:
            named = self._find_department(label)
            if named is None or named.level == "city":
                return named, False
            kind, level = named.kind, named.level
        local, _, _ = self.resolve_unit(kind, level, geo)
        if isinstance(local, UnlistedUnit):
            return local, True          # the street/town is not known: the territorial office, to be confirmed
        if local is not None and local.kind == kind:
            return local, False
        if named is None or (local is not None and geo.district and named.district_adcode != geo.district["adcode"]):
            return local, True          # no such unit here: whoever assigns it in this district, never another's
        return named, False

    def _find_department(self, label: str) -> Department | None:
        if label in self.kb.departments:
            return self.kb.departments[label]
        return next((d for d in self.kb.departments.values() if d.name == label), None)

    # -- feedback ------------------------------------------------------------------------------------------
    def learn(self, text: str, department_code: str, *, entry_id: str | None = None,
              created_by: str | None = None) -> dict:
        """Record that `text` really belonged to `department_code` (and entry `entry_id`, when known), with what the
        router says about it without corrections; the same complaint told again follows at once. Returns the
        stored correction (its id, expiry, the ids it superseded)."""
        if self.feedback is None:
            raise RuntimeError("feedback learning is not enabled for this router")
        dept = self.kb.departments.get(department_code)
        if dept is None:
            raise ValueError(f"unknown department code {department_code!r}")
        if entry_id is not None and entry_id not in self.kb.entries:
            raise ValueError(f"unknown knowledge-base entry {entry_id!r}")
        match_text = strip_boilerplate(normalize(check_text(text, max_chars=self.settings.max_text_chars)))
        origin = self.correction_origins([self.prepare(RouteRequest("", text))])[0]
        # The memory is searched with the first encoder's vector only: do not embed with the others too.
        vector = self.matcher.encoders.embedders[0].embed_queries([match_text])[0]
        return self.feedback.learn(match_text, kind=dept.kind, level=dept.level, department_code=dept.code,
                                   entry_id=entry_id, vector=vector, created_by=created_by, **origin)

    def correction_origins(self, items: Sequence[dict]) -> list[dict]:
        """What the router, without corrections, says about each complaint (`prepare`d): entry, its kind of unit
        and level, department."""
        outputs = self.route_prepared(items, use_corrections=False)
        origins = []
        for out in outputs:
            entry = self.kb.entries[out["kb_item"]["id"]]   # the best entry behind the kind of unit it chose
            dept = out.get("kb_department", out["department"]) or {}
            origins.append({"original_entry_id": entry.id, "original_kind": entry.lead, "original_level": entry.level,
                            "original_department_code": dept.get("code")})
        return origins


def iter_requests(records: Iterable[dict]) -> Iterable[RouteRequest]:
    for record in records:
        yield RouteRequest(str(record.get("id", "")), record.get("text"), parse_location(record.get("location")))
