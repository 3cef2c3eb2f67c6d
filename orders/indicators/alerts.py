"""预警: 久而未决 (open too long), 群体高发 (a surge of similar orders on one street), 敏感诉求 (sensitive tags) and
城市体征 (a vital at its warning line), most severe first; thresholds and 口径 in catalogue.py."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import numpy as np
from sqlalchemy.orm import Session

from hotline.core.clock import as_utc
from nlp.lexicons import lexicons
from orders.indicators.catalogue import ALERTS_DEFAULTS, alerts_definition
from orders.indicators.scope import NO_NAMES, Indicator, Names, Scope, handled, local_iso, scoped_orders, spoken_time
from orders.indicators.topics import tfidf_rows
from orders.lifecycle import OPEN_STATES, STATE_LABELS, State, timeliness
from orders.models import WorkOrder, utcnow
from orders.vitals.models import CITY_WIDE, LEVEL_LABELS
from orders.vitals.readings import latest_readings, threshold_words

SEVERITY_ORDER = {"高": 0, "中": 1, "低": 2}
SENSITIVE_SEVERITY = {"扬言": "高", "维稳": "高", "信访": "中", "舆情": "中"}


def _working_days_late(deadline: dt.datetime, now: dt.datetime) -> int:
    """Whole working days past the deadline: the largest k with add_working_days(deadline, k) <= now (0 if not due)."""
    whole_days = (now - deadline) // dt.timedelta(days=1)
    if whole_days < 1:
        return 0
    first = deadline.date() + dt.timedelta(days=1)
    return int(np.busday_count(first, first + dt.timedelta(days=whole_days)))   # Monday–Friday, as lifecycle counts


def _long_unresolved(orders: list[WorkOrder], now: dt.datetime, overdue_working_days: int, open_days: int,
                     names: Names) -> list[dict]:
    alerts = []
    for o in orders:
        if o.state not in OPEN_STATES:
            continue
        days_open = (now - as_utc(o.created_at)).total_seconds() / 86400
        late = _working_days_late(as_utc(o.deadline_at), now) if o.deadline_at else 0
        reasons, severe = [], days_open > 2 * open_days
        if late > overdue_working_days:
            reasons.append(f"已超过办理时限{late}个工作日（时限至{spoken_time(o.deadline_at)}）")
            if o.dispatched_at:
                severe |= timeliness(as_utc(o.dispatched_at), as_utc(o.deadline_at), now=now).label == "严重超期"
        if days_open > open_days:
            reasons.append(f"登记已{int(days_open)}天")
        if reasons:
            alerts.append(_alert("久而未决", "高" if severe else "中", [o], "，".join(reasons) +
                                 f"，仍未办结（当前：{STATE_LABELS[State(o.state)]}）", names))
    return alerts


def _windows(times: list[float], size: int, hours: float) -> list[tuple[int, int]]:
    """Maximal runs of sorted `times` in which some `hours`-long window holds at least `size` of them."""
    intervals: list[list[int]] = []
    last = 0
    for first in range(len(times)):
        last = max(last, first)
        while last + 1 < len(times) and times[last + 1] - times[first] <= hours * 3600:
            last += 1
        if last - first + 1 >= size:
            if intervals and first <= intervals[-1][1]:
                intervals[-1][1] = last
            else:
                intervals.append([first, last])
    return [(a, b) for a, b in intervals]


def _surges(orders: list[WorkOrder], matrix, size: int, hours: float, similarity: float, names: Names) -> list[dict]:
    from scipy.sparse.csgraph import connected_components

    by_street: dict[str, list[int]] = defaultdict(list)
    for row, o in enumerate(orders):
        if o.street_id:
            by_street[o.street_id].append(row)
    matters = {path: n for n, path in enumerate(sorted({o.category_path for o in orders if o.category_path}))}
    all_matters = np.array([matters.get(o.category_path, -1) for o in orders])   # -1: no category, matches nothing
    alerts = []
    for street_id, rows in sorted(by_street.items()):
        if len(rows) < size:
            continue
        matter = all_matters[rows]
        same_matter = (matter[:, None] == matter[None, :]) & (matter[:, None] >= 0)
        similar = (matrix[rows] @ matrix[rows].T).toarray() >= similarity if matrix is not None else False
        labels = connected_components(same_matter | similar, directed=False)[1]
        for label in sorted(set(labels.tolist())):
            group = sorted((orders[rows[i]] for i in np.flatnonzero(labels == label)),
                           key=lambda o: (as_utc(o.created_at), o.id))
            times = [as_utc(o.created_at).timestamp() for o in group]
            for first, last in _windows(times, size, hours):
                burst = group[first:last + 1]
                communities = Counter(o.community for o in burst if o.community).most_common(1)
                place = names.of("street", street_id)
                if communities and communities[0][1] == len(burst):
                    place += communities[0][0]
                category = Counter(o.category_path for o in burst if o.category_path).most_common(1)
                reason = (f"{place}在{spoken_time(burst[0].created_at)}至{spoken_time(burst[-1].created_at)}出现{len(burst)}件相似诉求"
                          + (f"（{category[0][0]}）" if category else "") + f"，达到{hours:g}小时内{size}件的群体高发线")
                alerts.append(_alert("群体高发", "高" if len(burst) >= 2 * size else "中", burst, reason, names))
    return alerts


def _sensitive(orders: list[WorkOrder], tags: tuple[str, ...], names: Names) -> list[dict]:
    alerts = []
    for o in orders:
        found = [t for t in tags if t in (o.tags or [])]
        if found and o.state in OPEN_STATES:
            severity = min((SENSITIVE_SEVERITY.get(t, "中") for t in found), key=SEVERITY_ORDER.__getitem__)
            alerts.append(_alert("敏感诉求", severity, [o], f"工单带有敏感标签：{'、'.join(found)}，仍未办结"
                                                          f"（当前：{STATE_LABELS[State(o.state)]}），请及时关注", names))
    return alerts


def _alert(kind: str, severity: str, orders: list[WorkOrder], reason: str, names: Names) -> dict:
    district = Counter(o.district_adcode for o in orders if o.district_adcode).most_common(1)
    street = Counter(o.street_id for o in orders if o.street_id).most_common(1)
    return {"kind": kind, "severity": severity, "order_nos": [o.order_no for o in orders], "reason": reason,
            "district": names.of("district", district[0][0]) if district else None,
            "street": names.of("street", street[0][0]) if street else None,
            "latest_at": local_iso(max(o.created_at for o in orders))}


def _vital_signs(session: Session, scope: Scope, names: Names, now: dt.datetime) -> list[dict]:
    """城市体征 at a warning line, as they stand now: the latest reading of each series at 预警 or 告警 that is not stale,
    for the whole city or the scope's district (a stale figure is not news: the vitals list marks it)."""
    district = names.of("district", scope.district_adcode) if scope.district_adcode else None
    found = []
    for reading in latest_readings(session, now=now):
        if reading.level not in ("warn", "alarm") or reading.stale:
            continue
        if district and reading.area not in (district, CITY_WIDE):
            continue
        lines = "；".join(threshold_words(t) for t in reading.thresholds)
        found.append({"kind": "城市体征", "severity": "高" if reading.level == "alarm" else "中", "order_nos": [],
                      "reason": f"{reading.area}{reading.name}为{reading.value:g}{reading.unit or ''}，达到"
                                f"{LEVEL_LABELS[reading.level]}线（{lines}），{spoken_time(reading.at)}上报",
                      "district": reading.area if reading.area != CITY_WIDE else None, "street": None,
                      "latest_at": local_iso(reading.at), "metric": reading.metric})
    return found


def alerts(session: Session, scope: Scope, *, now: dt.datetime | None = None,
           overdue_working_days: int = ALERTS_DEFAULTS["overdue_working_days"],
           open_days: int = ALERTS_DEFAULTS["open_days"], cluster_size: int = ALERTS_DEFAULTS["cluster_size"],
           cluster_hours: float = ALERTS_DEFAULTS["cluster_hours"],
           cluster_similarity: float = ALERTS_DEFAULTS["cluster_similarity"],
           sensitive_tags: tuple[str, ...] | None = ALERTS_DEFAULTS["sensitive_tags"], limit: int = 200,
           names: Names = NO_NAMES, vital_signs: bool = True) -> Indicator:
    """预警 over the orders registered in the scope, most severe first:

    - 久而未决: still open and past the deadline by more than `overdue_working_days` working days, or registered more
      than `open_days` days ago (高 when 严重超期 or open for twice that long);
    - 群体高发: at least `cluster_size` similar orders on one street within `cluster_hours` hours — similar meaning the
      same matter (细类) or text cosine similarity ≥ `cluster_similarity` (高 at twice the size);
    - 敏感诉求: still open and tagged 扬言/信访/维稳/舆情 (高 for 扬言 and 维稳);
    - 城市体征 (with `vital_signs`): a city vital at its warning (中) or alarm (高) line now, not stale.
    """
    if overdue_working_days < 0 or open_days < 1 or cluster_size < 2 or cluster_hours <= 0 or limit < 1:
        raise ValueError("thresholds out of range: overdue_working_days ≥ 0, open_days ≥ 1, cluster_size ≥ 2, "
                         "cluster_hours > 0, limit ≥ 1")
    now = now or utcnow()
    tags = tuple(sensitive_tags or lexicons()["sensitive_tags"])
    orders = scoped_orders(session, scope)
    matrix = tfidf_rows(orders)
    found = (_long_unresolved(handled(orders), now, overdue_working_days, open_days, names)
             + _surges(orders, matrix, cluster_size, cluster_hours, cluster_similarity, names)
             + _sensitive(orders, tags, names)
             + (_vital_signs(session, scope, names, now) if vital_signs else []))
    kinds = ("敏感诉求", "城市体征", "群体高发", "久而未决")
    found.sort(key=lambda a: (SEVERITY_ORDER[a["severity"]], kinds.index(a["kind"]), a["latest_at"] or "",
                              a["order_nos"]))
    definition = alerts_definition(overdue_working_days=overdue_working_days, open_days=open_days,
                                   cluster_size=cluster_size, cluster_hours=cluster_hours,
                                   cluster_similarity=cluster_similarity, sensitive_tags=tags)
    return Indicator("预警", len(found), definition=definition,
                     breakdown={"by_kind": dict(Counter(a["kind"] for a in found)), "alerts": found[:limit]})
