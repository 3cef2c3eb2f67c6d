"""HTTP access to the indicators, listed and dispatched from the one catalogue (orders/indicators/catalogue.py).

Places and units may be given as codes or as the names people use (岳麓区, 望月湖街道, 岳麓区城管局): they are resolved
through the router's knowledge base and gazetteer, and an unknown or ambiguous name is a 422 saying which.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from api.deps import IndicatorsReader as Reader
from api.deps import LoadedRouterDep, SessionsDep
from hotline.core.clock import city_midnight
from orders import indicators as ind
from orders.service import CHANNELS

router = APIRouter(prefix="/api/v1/indicators", tags=["indicators"])

# -- scope: codes or names -------------------------------------------------------------------------------------
def _resolved(current, value: str | None, resolve) -> str | None:
    """A code for a place/unit given by code or name, through the loaded router's knowledge base and gazetteer.
    While the router loads, a code (ASCII) passes as given and a name is a 503."""
    if not value or not value.strip():
        return None
    if current is None:
        if value.strip().isascii():
            return value.strip()
        raise HTTPException(503, "the knowledge base is still loading: give codes, or retry in a moment")
    try:
        return resolve(value, current)
    except ind.UnknownName as exc:
        raise HTTPException(422, str(exc)) from None


def _names(current) -> ind.Names:
    return ind.Names.from_kb(current.kb, current.gazetteer) if current is not None else ind.NO_NAMES


def _category(current, value: str) -> str:
    prefix = value.strip().strip("/")
    if current is not None:   # checked against the taxonomy whenever it is loaded
        paths = {"/".join(node.path[:level]) for node in current.kb.taxonomy.values() for level in (1, 2, 3)}
        if prefix not in paths:
            raise HTTPException(422, f"不认识的事项分类“{value}”：请给出大类（如“城市管理”）或“大类/子类”")
    return prefix


def _channel(value: str) -> str:
    wanted = value.strip()
    by_label = {label: code for code, label in ind.CHANNEL_LABELS.items()}
    channel = wanted if wanted in CHANNELS else by_label.get(wanted)
    if channel is None:
        raise HTTPException(422, f"unknown channel {value!r}: one of {', '.join(CHANNELS)}")
    return channel


def scope_of(current: LoadedRouterDep,
             start: Annotated[dt.date, Query(description="first day (inclusive, UTC)")],
             end: Annotated[dt.date, Query(description="last day (exclusive, UTC)")],
             district: Annotated[str | None, Query(max_length=64, description="adcode or name: 430104, 岳麓区")] = None,
             street: Annotated[str | None, Query(max_length=64, description="id or name: 望月湖街道")] = None,
             category: Annotated[str | None, Query(max_length=128, description="大类 or 大类/子类")] = None,
             department: Annotated[str | None, Query(max_length=64, description="code, name or alias")] = None,
             channel: Annotated[str | None, Query(max_length=32)] = None) -> ind.Scope:
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if (end - start).days > 366:
        raise HTTPException(422, "a period may span at most 366 days")
    district_code = _resolved(current, district, lambda v, r: ind.resolve_district(v, gazetteer=r.gazetteer))
    street_id = _resolved(current, street, lambda v, r: ind.resolve_street(v, gazetteer=r.gazetteer,
                                                                          district=district_code))
    department_code = _resolved(current, department, lambda v, r: ind.resolve_department(
        v, kb=r.kb, gazetteer=r.gazetteer, district=district_code))
    return ind.Scope(city_midnight(start), city_midnight(end), district_code, street_id,
                     _category(current, category) if category and category.strip() else None, department_code,
                     _channel(channel) if channel and channel.strip() else None)


ScopeDep = Annotated[ind.Scope, Depends(scope_of)]


def _scope_json(scope: ind.Scope) -> dict:
    """The filters as resolved, so a caller that sent names sees which codes were used."""
    return {"start": scope.start.date().isoformat(), "end": scope.end.date().isoformat(),
            "district": scope.district_adcode, "street": scope.street_id, "category": scope.category_prefix,
            "department": scope.department_code, "channel": scope.channel}


def _answer(indicator: ind.Indicator, scope: ind.Scope) -> dict:
    return asdict(indicator) | {"scope": _scope_json(scope)}


# -- indicators ------------------------------------------------------------------------------------------------
@router.get("")
def list_indicators() -> dict:
    """The catalogue: every indicator with its Chinese label, unit, 口径, whether higher is better, whether `by`
    (ranking by a dimension) applies, its group, and the words officials use for it; the dimensions and channels."""
    described = [{"name": e.name, "label": e.label, "unit": e.unit, "kind": e.kind, "definition": e.definition,
                  "supports_by": e.supports_by, "higher_is_better": e.higher_is_better, "group": e.group,
                  "words": list(e.words), "ambiguous": list(e.ambiguous)} for e in ind.CATALOGUE.values()]
    return {"indicators": described,
            "dimensions": [{"name": name, "label": g.label} for name, g in ind.GROUPINGS.items()],
            "channels": [{"name": code, "label": label} for code, label in ind.CHANNEL_LABELS.items()]}


def _computation(name: str):
    """(session, scope) → Indicator, or → {member label: Indicator} for a group; None for an unknown name."""
    entry = ind.CATALOGUE.get(name)
    if entry is None:
        return None
    if entry.kind == "group":
        return ind.GROUP_FUNCTIONS[name]
    if entry.group:
        return lambda session, scope: ind.GROUP_FUNCTIONS[entry.group](session, scope)[entry.label]
    return ind.SCOPE_FUNCTIONS.get(name)


@router.get("/alerts")
def alerts(sessions: SessionsDep, router_: LoadedRouterDep, principal: Reader, scope: ScopeDep,
           overdue_working_days: Annotated[int, Query(ge=0, le=60)] = 3,
           open_days: Annotated[int, Query(ge=1, le=366)] = 30,
           cluster_size: Annotated[int, Query(ge=2, le=1000)] = 5,
           cluster_hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
           limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    """预警: 久而未决, 群体高发, 敏感诉求 among the orders of the scope (thresholds as documented in the definition)."""
    with sessions() as session:
        result = ind.alerts(session, scope, overdue_working_days=overdue_working_days, open_days=open_days,
                            cluster_size=cluster_size, cluster_hours=cluster_hours, limit=limit, names=_names(router_))
    return _answer(result, scope)


@router.get("/hot_topics")
def hot_topics(sessions: SessionsDep, router_: LoadedRouterDep, principal: Reader, scope: ScopeDep,
               similarity: Annotated[float, Query(gt=0, le=1)] = ind.SIMILARITY,
               min_size: Annotated[int, Query(ge=2, le=1000)] = 3,
               top: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    """热点诉求: groups of similar orders, largest first."""
    with sessions() as session:
        result = ind.hot_topics(session, scope, similarity=similarity, min_size=min_size, top=top, names=_names(router_),
                                segmenter=router_.segmenter if router_ is not None else None)
    return _answer(result, scope)


@router.get("/hot_areas")
def hot_areas(sessions: SessionsDep, router_: LoadedRouterDep, principal: Reader, scope: ScopeDep,
              min_count: Annotated[int, Query(ge=1, le=100_000)] = 5,
              growth: Annotated[float, Query(ge=1, le=100)] = 1.5,
              top: Annotated[int, Query(ge=1, le=500)] = 10) -> dict:
    """高发区域: streets and communities with many orders and more than the previous period."""
    with sessions() as session:
        result = ind.hot_areas(session, scope, min_count=min_count, growth=growth, top=top, names=_names(router_))
    return _answer(result, scope)


KEY_FIGURES = ("order_count", "completion_rate", "on_time_rate", "satisfaction_rate", "overdue_count",
               "average_handling_hours")


def _measure_list(measures: str) -> list[str]:
    wanted = [m.strip() for m in measures.split(",") if m.strip()]
    if not wanted or len(wanted) > 20:
        raise HTTPException(422, "measures: 1 to 20 indicator names, comma-separated")
    return wanted


@router.get("/figures")
def key_figures(sessions: SessionsDep, principal: Reader, scope: ScopeDep,
                measures: Annotated[str, Query(max_length=400, description="comma-separated indicator names")]
                = ",".join(KEY_FIGURES),
                compare: Annotated[bool, Query(description="also the previous period of the same length (环比)")] = False,
                year_before: Annotated[bool, Query(description="also the same dates a year earlier (同比)")] = False
                ) -> dict:
    """Several indicators of one scope in one answer (the cockpit's key figures), each the number GET /{name} gives,
    from one read of the orders per period; with 环比 and 同比 (value and relative change) when asked."""
    wanted = _measure_list(measures)
    with sessions() as session:
        try:
            current = ind.figures(session, scope, wanted)
            before = ind.figures(session, scope.previous(), wanted) if compare else {}
            earlier = ind.figures(session, scope.year_earlier(), wanted) if year_before else {}
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    answer: dict = {}
    for name, result in current.items():
        answer[name] = asdict(result)
        for key, other in (("previous", before), ("year_before", earlier)):
            if name in other:
                answer[name][key] = {"value": other[name].value,
                                     "change": ind.relative_change(result.value, other[name].value)}
    return {"figures": answer, "scope": _scope_json(scope)}


UNIT_TABLE = ("order_count", "completion_rate", "on_time_rate", "overdue_count", "dissatisfaction_rate")


@router.get("/table")
def measures_table(sessions: SessionsDep, router_: LoadedRouterDep, principal: Reader, scope: ScopeDep,
                   by: Annotated[str, Query(description="the rows: " + ", ".join(ind.GROUPINGS))] = "department",
                   measures: Annotated[str, Query(max_length=400, description="comma-separated indicator names")]
                   = ",".join(UNIT_TABLE)) -> dict:
    """Several indicators for every group of a dimension in one answer (the cockpit's 承办单位考核 table): each
    computed by the same function as GET /{name}?by=…, from one read of the orders. With by=department the rows also
    carry the units' 退单 / 有责退单 (as return_ranking counts them)."""
    wanted = _measure_list(measures)
    if by not in ind.GROUPINGS:
        raise HTTPException(422, f"by must be one of {', '.join(ind.GROUPINGS)}")
    with sessions() as session:
        try:
            rows = ind.table(session, scope, dimension=by, measures=wanted, names=_names(router_))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if by == "department":
            returns = ind.return_ranking(session, scope, top=None).breakdown
            for code, row in rows.items():
                counts = returns.get(code) or {}
                row["returns"] = {"退单": counts.get("退单", 0), "有责退单": counts.get("有责退单", 0)}
    return {"by": by, "measures": {m: {"label": ind.CATALOGUE[m].label, "unit": ind.CATALOGUE[m].unit,
                                       "definition": ind.CATALOGUE[m].definition} for m in wanted},
            "rows": rows, "scope": _scope_json(scope)}


@router.get("/{name}")
def indicator(name: str, sessions: SessionsDep, router_: LoadedRouterDep, principal: Reader, scope: ScopeDep,
              by: Annotated[str | None, Query(description="rank by a dimension: " + ", ".join(ind.GROUPINGS))] = None,
              order: Annotated[Literal["asc", "desc"], Query(description="with by: asc = lowest first")] = "desc",
              top: Annotated[int, Query(ge=1, le=500)] = 10,
              min_denominator: Annotated[int, Query(ge=1, le=100_000, description="with by: smallest group ranked")] = 5,
              dimension: Annotated[str | None, Query(description="for ranking (same as by)")] = None,
              compare: Annotated[bool, Query(description="also the previous period of the same length")] = False
              ) -> dict:
    """One indicator for a period and filters: value, numerator, denominator, definition (口径), breakdown.
    With `by`, the indicator for each value of a dimension, ranked (e.g. on_time_rate?by=department&order=asc&top=3);
    with `by` and `compare`, each group and the whole also with the previous period's value and the change."""
    with sessions() as session:
        if name == "ranking":
            dimension = dimension or by
            if dimension not in ind.GROUPINGS:
                raise HTTPException(422, f"dimension must be one of {', '.join(ind.GROUPINGS)}")
            return _answer(ind.ranking(session, scope, dimension, top=top), scope)
        if by is not None:
            entry = ind.CATALOGUE.get(name)
            if entry is not None and entry.kind == "group":
                members = ", ".join(m.name for m in ind.members(name))
                raise HTTPException(422, f"{name} is a group: rank one of its members ({members})")
            if entry is None:
                raise HTTPException(404, f"unknown indicator {name!r}")
            try:
                result = ind.by_dimension(session, scope, measure=name, dimension=by, order=order, top=top,
                                          min_denominator=min_denominator, names=_names(router_), compare=compare)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
            answer = _answer(result, scope)
            if compare:   # the overall figure of the previous period too, as without `by`
                before = _computation(name)(session, scope.previous()).value
                answer["previous"] = {"value": before, "change": ind.relative_change(result.value, before)}
            return answer
        metric = _computation(name)
        if metric is None:
            raise HTTPException(404, f"unknown indicator {name!r}")
        if ind.CATALOGUE[name].kind == "group":
            return {key: asdict(value) for key, value in metric(session, scope).items()} | {
                "scope": _scope_json(scope)}
        if compare:
            result = ind.with_previous(metric, session, scope)
            return {"current": asdict(result["current"]), "previous": asdict(result["previous"]),
                    "change": result["change"], "scope": _scope_json(scope)}
        result = metric(session, scope)
        if name == "return_ranking":   # keyed by unit code: each with the unit's name, as rankings are
            names = _names(router_)
            for code, counts in result.breakdown.items():
                counts["label"] = names.of("department", code)
        return _answer(result, scope)
