"""`action_query_indicator`: an official asks for a figure in plain Chinese and gets it from the indicators API.

"本月岳麓区投诉多少件", "按时办结率最低的三个部门", "那雨花区呢", "按街道拆分", "换成上个月", "满意率比上个月怎么样".

A question becomes a query — metric × period × district/street/category/department/channel × (ranking by a
dimension | comparison with the previous period) — read from the message's entities and words:
- the metric from the `metric` entity or the message, through the words of the service's indicator catalogue
  (catalogue.py; the most specific word wins: 按时办结率 over 办结率, and any named rate over the generic 投诉/多少件);
- the period with periods.py (Asia/Shanghai; the API gets start inclusive, end exclusive); 本月 by default;
- district / street / category / department names pass through: the API resolves names and says which it does not
  know;
- "最低的三个部门" → by=department&order=asc&top=3, "按街道拆分" / "各区" → by=street / district;
- "环比" / "比上个月" → compare=true (the API compares with the previous period of the same length).

Follow-ups keep context through the `indicator_query` slot (the last full query): a turn without a metric, or one
phrased as a follow-up ("那…呢", "换成…"), is the last query with only what this turn names changed.

The Bearer token is the official's JWT from metadata.auth_token; without one the answer is
"指标查询需要工作人员登录后使用". Answers give the number(s) with the unit and one sentence of meaning; rankings,
breakdowns and comparisons also send `json_message={"chart": {...}}` for the web widget's bar chart.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from assistant.actions import vitals
from assistant.actions.catalogue import GENERIC, Catalogue, Metric, indicator_catalogue
from assistant.actions.client import ServiceClient, ServiceRefused, ServiceUnavailable
from assistant.actions.context import BUSY, conversation_metadata, current_context, entity_values, latest_text
from assistant.actions.periods import NUMBER, Period, chinese_number, describe_range, find_period, this_month
from assistant.actions.speech import chart_unit, chart_value, number

LOGIN_REQUIRED = "指标查询需要工作人员登录后使用。"
ASK_METRIC = "您想查询哪个指标？例如：本月诉求量、按时办结率、满意率、超期件数，也可以按区、街道或部门排名。"


DIMENSION_WORDS = {"承办单位": "department", "部门": "department", "单位": "department", "委办局": "department",
                   "区县": "district", "县区": "district", "区": "district", "县": "district",
                   "街道": "street", "街镇": "street", "镇街": "street", "乡镇": "street",
                   "大类": "category1", "子类": "category2", "细类": "category3", "小类": "category3", "类别": "category", "分类": "category", "类型": "category",
                   "事项": "category", "渠道": "channel", "来源": "channel"}
DIMENSION_LABELS = {"department": "部门", "district": "区县", "street": "街道（乡镇）", "category": "事项类别",
                    "category1": "事项大类", "category2": "事项子类", "category3": "事项细类", "channel": "渠道"}
_DIM = "(" + "|".join(sorted(DIMENSION_WORDS, key=len, reverse=True)) + ")"
_HIGH = ("最高", "最多", "排名前", "排前", "前", "最长", "最慢", "最大")
_LOW = ("最低", "最少", "排名后", "排后", "后", "倒数", "末位", "垫底", "最短", "最快", "最小")
_DIRECTION = "(" + "|".join(sorted((*_HIGH, *_LOW, "最好", "最差"), key=len, reverse=True)) + ")"
_RANK_BEFORE = re.compile(rf"{_DIRECTION}的?({NUMBER})?(?:个|名|位|家|条)?的?{_DIM}")
_RANK_AFTER = re.compile(rf"{_DIM}(?:的|中|里|当中)?(?:排名|排行|排序)?{_DIRECTION}的?({NUMBER})?(?:个|名|位|家)?")
_RANK_WHICH = re.compile(rf"哪(?:个|些|几个|一个)?{_DIM}.*?{_DIRECTION}")
_RANKING = re.compile(rf"{_DIM}(?:排名|排行|排序)(?:前|后)?({NUMBER})?")
_SPLIT = re.compile(rf"(?:按|分|各|每个|各个|逐个|按照)个?{_DIM}")
_COMPARE = re.compile(r"环比|同比|上一周期|上期|(?:比|较|跟|和|与|同|对比|相比|比较)(?:一下)?(?:起)?"
                      r"(?:上个?月|上一个?月|上周|上一?周|上个?星期|上个?礼拜|去年|上个?季度|昨天|前一天|之前|以前|前一个?周期)")
# The comparison's target period is not the period asked about ("本月比上个月" is about 本月).
_COMPARE_TARGET = re.compile(r"(?:比|较|跟|和|与|同|对比|相比|比较)(?:一下)?(?:起)?"
                             r"(?:上个?月|上一个?月|上周|上一?周|上个?星期|上个?礼拜|去年|上个?季度|昨天|前一天)")
_FOLLOW_UP = re.compile(r"^(?:那|那么|那就|换成|换到|换|改成|改为|改看|再看看?|再查|看看|如果是|要是|只看)|呢[?？!！。]*$")
_CHANNEL = re.compile(r"(?:来自|通过|从)?(微信|公众号|网站|网页|热线电话|电话|Open311|open311|网格员?)(?:渠道|来源|端|上报)")
CHANNEL_WORDS = {"微信": "wechat", "公众号": "wechat", "网站": "web", "网页": "web", "热线电话": "hotline", "电话": "hotline",
                 "Open311": "open311", "open311": "open311", "网格": "grid", "网格员": "grid"}
FILTERS = ("district", "street", "category", "department", "channel")


@dataclass
class Turn:
    """What one message says about the query; None = not mentioned."""

    metric: str | None = None
    period: Period | None = None
    filters: dict[str, str] = field(default_factory=dict)
    by: str | None = None
    order: str | None = None          # asc / desc (None = the API's default, desc)
    top: int | None = None
    extreme: str | None = None        # the direction word as said: 最低, 最多…
    compare: bool = False
    follow_up: bool = False


def _direction(word: str, metric: Metric) -> str:
    if word in ("最好", "最差"):
        better = metric.higher_is_better
        return "desc" if (word == "最好") == better else "asc"
    return "desc" if word in _HIGH else "asc"


def _ranking(text: str, metric: Metric) -> tuple[str | None, str | None, int | None, str | None]:
    """(by, order, top, direction word) from ranking or breakdown phrasing, or Nones."""
    for pattern, groups in ((_RANK_BEFORE, (3, 1, 2)), (_RANK_AFTER, (1, 2, 3)), (_RANK_WHICH, (1, 2, None))):
        m = pattern.search(text)
        if m:
            dimension, direction = m.group(groups[0]), m.group(groups[1])
            top = chinese_number(m.group(groups[2])) if groups[2] and m.group(groups[2]) else None
            return DIMENSION_WORDS[dimension], _direction(direction, metric), top, direction
    m = _RANKING.search(text)
    if m:
        return DIMENSION_WORDS[m.group(1)], "desc", chinese_number(m.group(2)) if m.group(2) else None, None
    m = _SPLIT.search(text)
    if m:
        return DIMENSION_WORDS[m.group(1)], None, None, None
    return None, None, None, None


def parse_turn(text: str, entities: dict[str, list[str]], *, today: dt.date, catalogue: Catalogue) -> Turn:
    """Read one message (and its entities) into a Turn. Pure: `today` is the city's date, `catalogue` the service's."""
    prepared = unicodedata.normalize("NFKC", text or "").replace(" ", "")
    turn = Turn(compare=bool(_COMPARE.search(prepared)), follow_up=bool(_FOLLOW_UP.search(prepared)))
    turn.metric = (next((m for m in map(catalogue.metric_of, entities.get("metric", [])) if m), None)
                   or catalogue.metric_of(prepared))
    without_target = _COMPARE_TARGET.sub("", prepared)
    # "和上个月比呢": 上个月 is what to compare with, not the period asked about. The NLU gives the canonical value
    # (上月), so entities are matched to the comparison's target by the dates they mean.
    targets = [hit[0].as_params() for m in _COMPARE_TARGET.finditer(prepared)
               if (hit := find_period(m.group(0), today=today))]
    asked = find_period(without_target, today=today)
    for value in entities.get("period", []):
        hit = find_period(value, today=today)
        if hit and hit[0].as_params() in targets and not (asked and asked[0].as_params() == hit[0].as_params()):
            continue
        if hit:
            turn.period = hit[0]
            break
    if turn.period is None:
        turn.period = asked[0] if asked else None
    for name in ("district", "street", "category", "department"):
        values = entities.get(name, [])
        if values:
            turn.filters[name] = values[0]
    channel = _CHANNEL.search(prepared)
    if channel:
        turn.filters["channel"] = CHANNEL_WORDS[channel.group(1)]
    turn.by, turn.order, top, turn.extreme = _ranking(without_target, catalogue.metrics[turn.metric or GENERIC])
    turn.top = top if top is None else max(1, min(top, 50))
    return turn


def merge(last: dict | None, turn: Turn, *, today: dt.date) -> dict | None:
    """The query this turn asks for: a new one, or the last one with what this turn names changed."""
    fresh = last is None or (turn.metric is not None and not turn.follow_up)
    if fresh and turn.metric is None and not (turn.by or turn.period or turn.filters or turn.compare):
        return None                                        # nothing to go on: ask which indicator
    query: dict[str, Any] = {} if fresh else dict(last)
    query["metric"] = turn.metric or query.get("metric") or GENERIC
    period = turn.period or (None if fresh else _stored_period(query)) or this_month(today)
    query.update(start=period.start.isoformat(), end=period.end.isoformat(), period_label=period.label)
    for name in FILTERS:
        query.setdefault(name, None)
    for name, value in turn.filters.items():
        query[name] = value
    if "district" in turn.filters and "street" not in turn.filters:
        query["street"] = None                             # a street belongs to one district
    if "street" in turn.filters and "district" not in turn.filters:
        query["district"] = None
    if not turn.by and query.get("by") in ("district", "street") and query["by"] in turn.filters:
        query.update(by=None, order=None, top=None, extreme=None)   # "那岳麓区呢" after a ranking of districts
    if turn.by:
        query.update(by=turn.by, order=turn.order, top=turn.top, extreme=turn.extreme)
        if turn.by == "district":
            query["district"] = query["street"] = None     # ranking districts, not one district's streets
        if turn.by == "street" and "district" not in turn.filters:
            query["street"] = None
    elif fresh:
        query.update(by=None, order=None, top=None, extreme=None)
    if turn.compare:
        query["compare"] = True            # a ranking stays: each group is compared ("各区…和上个月比呢")
    elif fresh or turn.by:
        query["compare"] = False
    return query


def _stored_period(query: dict) -> Period | None:
    try:
        return Period(dt.date.fromisoformat(query["start"]), dt.date.fromisoformat(query["end"]),
                      query.get("period_label") or "")
    except (KeyError, TypeError, ValueError):
        return None


# -- answers --------------------------------------------------------------------------------------------------------
def scope_words(query: dict, channel_labels: dict[str, str]) -> str:
    words = [query.get("period_label") or ""]
    for name in ("district", "street", "department"):
        if query.get(name):
            words.append(query[name])
    if query.get("category"):
        words.append(f"“{query['category']}”类")
    if query.get("channel"):
        words.append(f"{channel_labels.get(query['channel'], query['channel'])}渠道")
    return "".join(words)


def _chart(title: str, unit: str, labels: list[str], values: list[float | None]) -> dict:
    return {"chart": {"type": "bar", "title": title, "unit": chart_unit(unit), "labels": labels, "values": values}}


def _basis(result: dict, metric: Metric) -> str:
    numerator, denominator = result.get("numerator"), result.get("denominator")
    if metric.unit == "比例" and denominator:
        return f"即{int(denominator)}件中有{int(numerator or 0)}件，口径：{result.get('definition', '')}。"
    if metric.unit in ("小时", "分钟") and denominator:
        return f"基于{int(denominator)}件工单计算，口径：{result.get('definition', '')}。"
    return f"口径：{result.get('definition', '')}。" if result.get("definition") else ""


def answer_single(query: dict, result: dict, catalogue: Catalogue) -> tuple[str, dict | None]:
    metric = catalogue.metrics[query["metric"]]
    scope = scope_words(query, catalogue.channel_labels)
    if result.get("value") is None:
        return f"{scope}没有可用于计算{metric.label}的工单（分母为0）。", None
    return f"{scope}{metric.label}为{number(result['value'], metric.unit)}。{_basis(result, metric)}", None


def _previous_range(query: dict) -> str:
    start, end = dt.date.fromisoformat(query["start"]), dt.date.fromisoformat(query["end"])
    length = end - start
    return describe_range(start - length, start)


def change_words(now_value: float | None, before_value: float | None, unit: str, change: float | None = None) -> str:
    """"比上一周期增加12.5%", "比上一周期提高3.0个百分点" (rates move in points), "与上一周期持平"."""
    if now_value is None or before_value is None:
        return "其中一期没有可计算的工单，无法比较"
    if unit == "比例":
        points = round((now_value - before_value) * 100, 1)
        return "与上一周期持平" if points == 0 else f"比上一周期{'提高' if points > 0 else '下降'}{abs(points)}个百分点"
    if before_value == 0:
        return "上一周期为0，无法计算增幅" if now_value else "两期都为0"
    change = change if change is not None else (now_value - before_value) / before_value
    return "与上一周期持平" if round(change * 100, 1) == 0 else \
        f"比上一周期{'增加' if change > 0 else '减少'}{abs(change) * 100:.1f}%"


def answer_compare(query: dict, result: dict, catalogue: Catalogue) -> tuple[str, dict | None]:
    metric = catalogue.metrics[query["metric"]]
    current, previous = result.get("current") or {}, result.get("previous") or {}
    now_value, before_value = current.get("value"), previous.get("value")
    before_words = f"上一周期（{_previous_range(query)}）"
    text = (f"{scope_words(query, catalogue.channel_labels)}{metric.label}为{number(now_value, metric.unit)}，"
            f"{before_words}为{number(before_value, metric.unit)}。")
    text += change_words(now_value, before_value, metric.unit, result.get("change")) + "。"
    chart = _chart(f"{query.get('period_label', '')}{metric.label}环比", metric.unit, ["上一周期", "本期"],
                   [chart_value(before_value, metric.unit), chart_value(now_value, metric.unit)])
    return text, chart


def answer_by(query: dict, result: dict, catalogue: Catalogue) -> tuple[str, dict | None]:
    metric = catalogue.metrics[query["metric"]]
    dimension = DIMENSION_LABELS.get(query["by"], query["by"])
    items = [(key, item) for key, item in (result.get("breakdown") or {}).items() if isinstance(item, dict)]
    rows = [(item.get("label") or key, item.get("value")) for key, item in items]
    scope = scope_words(query, catalogue.channel_labels)
    if not rows:
        extra = "（比例和平均值每组至少需要5件工单才参与排名）" if metric.unit != "件" else ""
        return f"{scope}没有可以按{dimension}排列的{metric.label}数据{extra}。", None
    if query.get("compare") and all("previous" in item for _, item in items):
        listed = "；".join(f"{label} {number(value, metric.unit)}（上一周期{number(item['previous'], metric.unit)}，"
                          f"{change_words(value, item['previous'], metric.unit, item.get('change'))}）"
                          for (label, value), (_, item) in zip(rows, items))
    else:
        listed = "、".join(f"{label} {number(value, metric.unit)}" for label, value in rows)
    if query.get("order"):
        extreme = query.get("extreme") or ("最低" if query["order"] == "asc" else "最高")
        head = f"{scope}{metric.label}{extreme}的{len(rows)}个{dimension}：{listed}。"
        meaning = f"{extreme}的是{rows[0][0]}（{number(rows[0][1], metric.unit)}）"
        if result.get("value") is not None:
            meaning += f"，总体为{number(result['value'], metric.unit)}"
        meaning += "。"
    elif query.get("compare") and isinstance(result.get("previous"), dict):
        head = f"{scope}{metric.label}按{dimension}：{listed}。"
        before = result["previous"].get("value")
        meaning = (f"总体{number(result.get('value'), metric.unit)}，"
                   f"{change_words(result.get('value'), before, metric.unit, result['previous'].get('change'))}。")
    else:
        head = f"{scope}{metric.label}按{dimension}：{listed}。"
        if not any(value for _, value in rows):
            meaning = f"各{dimension}都为{number(0, metric.unit)}。"
        elif metric.unit == "件" and result.get("value"):
            share = (rows[0][1] or 0) / result["value"] * 100
            meaning = f"其中{rows[0][0]}最多，占{share:.1f}%。"
        else:
            meaning = f"其中{rows[0][0]}最高（{number(rows[0][1], metric.unit)}）。"
    title = f"{query.get('period_label', '')}{metric.label}（按{dimension}）"
    chart = _chart(title, metric.unit, [label for label, _ in rows], [chart_value(v, metric.unit) for _, v in rows])
    return head + meaning, chart


def answer_list(query: dict, result: dict, catalogue: Catalogue) -> tuple[str, dict | None]:
    """热点诉求 / 高发区域 / 预警 / 退单 (lists rather than one figure)."""
    scope = scope_words(query, catalogue.channel_labels)
    breakdown = result.get("breakdown") or {}
    name = query["metric"]
    if name == "hot_topics":
        topics = breakdown.get("topics") or []
        if not topics:
            return f"{scope}没有形成热点（相似诉求达到一定件数才算热点）。", None
        listed = "；".join(f"{i}. {t.get('label') or t.get('topic')}（{t.get('size')}件）" for i, t in enumerate(topics[:5], start=1))
        return (f"{scope}热点诉求共{len(topics)}个：{listed}。最集中的是“{topics[0].get('label') or topics[0].get('topic')}”。",
                _chart(f"{query.get('period_label', '')}热点诉求", "件", [t.get("label") or t.get("topic") for t in topics[:10]],
                       [t.get("size") for t in topics[:10]]))
    if name == "hot_areas":
        areas = breakdown.get("areas") or []
        if not areas:
            return f"{scope}没有高发区域（件数多且比上一周期明显上升的街道或社区）。", None
        labels = [f"{a.get('district_name') or ''}{a.get('street') or ''}{a.get('community') or ''}" for a in areas]
        listed = "；".join(f"{label}（{a.get('count')}件）" for label, a in zip(labels[:5], areas[:5]))
        return (f"{scope}高发区域：{listed}。最突出的是{labels[0]}。",
                _chart(f"{query.get('period_label', '')}高发区域", "件", labels[:10], [a.get("count") for a in areas[:10]]))
    if name == "alerts":
        kinds = breakdown.get("by_kind") or {}
        total = int(result.get("value") or 0)
        if not total:
            return f"{scope}没有预警。", None
        listed = "、".join(f"{kind}{count}条" for kind, count in kinds.items())
        first = (breakdown.get("alerts") or [{}])[0]
        return (f"{scope}共有{total}条预警：{listed}。最需要关注的是：{first.get('reason', '')}。",
                _chart(f"{query.get('period_label', '')}预警", "条", list(kinds), list(kinds.values())))
    # return_ranking: {department: {"退单": n, "有责退单": m}}
    rows = [(counts.get("label") or dept, counts.get("退单", 0), counts.get("有责退单", 0))
            for dept, counts in breakdown.items() if isinstance(counts, dict)]   # names, not unit codes
    if not rows:
        return f"{scope}没有退单。", None
    listed = "、".join(f"{dept} {n}次（有责{fault}次）" for dept, n, fault in rows[:5])
    return (f"{scope}退单共{int(result.get('value') or 0)}次，按承办单位：{listed}。退单最多的是{rows[0][0]}。",
            _chart(f"{query.get('period_label', '')}退单数（按承办单位）", "件", [r[0] for r in rows],
                   [r[1] for r in rows]))


def api_request(query: dict, metric: Metric) -> tuple[str, dict[str, Any], str]:
    """(indicator name, query parameters, answer kind) for the API call a query about `metric` needs."""
    params: dict[str, Any] = {"start": query["start"], "end": query["end"]}
    params.update({name: query.get(name) for name in FILTERS})
    if metric.kind == "list" or metric.name == "return_ranking":
        return metric.name, params, "list"
    if query.get("by") and metric.rankable:
        params.update(by=query["by"], order=query.get("order") or "desc", top=query.get("top"),
                      compare=bool(query.get("compare")))
        return metric.name, params, "by"
    if query.get("compare"):
        params["compare"] = True
        return metric.name, params, "compare"
    return metric.name, params, "single"


def cockpit_link(query: dict, result: dict) -> dict:
    """The cockpit view that shows this answer: same period, and the district, 大类 and channel as the API resolved
    them (the cockpit filters on those; a street or unit narrows only the answer)."""
    scope = result.get("scope") if isinstance(result.get("scope"), dict) else {}
    if not scope and isinstance(result.get("current"), dict):
        scope = result["current"].get("scope") or {}
    params = {"start": query["start"], "end": query["end"], "district": scope.get("district") or "",
              "category": (scope.get("category") or "").split("/")[0], "channel": scope.get("channel") or ""}
    return {"href": "/cockpit?" + urlencode({k: v for k, v in params.items() if v}), "title": "在驾驶舱查看"}


ANSWERS = {"single": answer_single, "compare": answer_compare, "by": answer_by, "list": answer_list}


def refusal_text(exc: ServiceRefused) -> str:
    if exc.status == 401:
        return "登录已过期，请重新登录后再查询指标。"
    if exc.status == 403:
        return "您的账号没有查询指标的权限。"
    if exc.status == 404:
        return "暂不支持这个指标。"
    if exc.status == 422 and isinstance(exc.detail, str):
        return f"查询条件有误：{exc.detail}。"
    return "查询条件有误，请换个说法再试，例如“本月岳麓区诉求量”。"


class ActionQueryIndicator(Action):
    def name(self) -> str:
        return "action_query_indicator"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        token = conversation_metadata(tracker).get("auth_token")
        if not token:
            dispatcher.utter_message(text=LOGIN_REQUIRED)
            return []
        context = current_context()
        entities = {name: entity_values(tracker, name)
                    for name in ("metric", "period", "district", "street", "category", "department")}
        text = latest_text(tracker)
        slot = tracker.get_slot("indicator_query")
        last = slot if isinstance(slot, dict) and slot.get("metric") else None
        last_vitals = slot if isinstance(slot, dict) and slot.get("vitals") else None
        if not text.strip() and not any(entities.values()) and last is None and last_vitals is None:
            dispatcher.utter_message(text=ASK_METRIC)     # nothing to read and nothing to follow: no call needed
            return []
        try:
            async with ServiceClient(context) as api:
                catalogue = await indicator_catalogue(api, token=str(token))
                turn = parse_turn(text, entities, today=context.today(), catalogue=catalogue)
                district = (entities.get("district") or [None])[0]
                question = None if turn.metric not in (None, "alerts") else \
                    vitals.read_question(text, district=district, last=None if last else last_vitals)
                if question is not None:            # 城市体征: the latest readings, not orders
                    readings = await api.vitals({"area": question.area}, token=str(token))
                    dispatcher.utter_message(text=vitals.answer(question, readings.get("vitals") or [],
                                                                today=context.today()))
                    dispatcher.utter_message(json_message={"link": {"href": vitals.COCKPIT_VITALS,
                                                                    "title": "在驾驶舱查看城市体征"}})
                    return [SlotSet("indicator_query", question.to_slot())]
                query = merge(last if last and last["metric"] in catalogue.metrics else None, turn,
                              today=context.today())
                if query is None:
                    dispatcher.utter_message(text=ASK_METRIC)
                    return []
                name, params, kind = api_request(query, catalogue.metrics[query["metric"]])
                result = await api.indicator(name, params, token=str(token))
        except ServiceUnavailable:
            dispatcher.utter_message(text=BUSY)
            return []
        except ServiceRefused as exc:
            dispatcher.utter_message(text=refusal_text(exc))
            return []            # the last good query stays the context for the next follow-up
        answer, chart = ANSWERS[kind](query, result, catalogue)
        dispatcher.utter_message(text=answer)
        dispatcher.utter_message(json_message=(chart or {}) | {"link": cockpit_link(query, result)})
        return [SlotSet("indicator_query", query)]
