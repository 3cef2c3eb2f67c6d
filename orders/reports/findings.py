"""主要情况: a paragraph of plain findings written from a report's figures and nothing else.

Each sentence is a template filled with numbers already in the content (formatted as the tables print them), and a
sentence whose figure is missing is left out rather than guessed: the text states no fact the figures do not.
"""
from __future__ import annotations

from orders.reports.formatting import change, figure_value, number, percent


def _compared(figure: dict) -> str:
    parts = []
    if figure["change"] is not None:
        parts.append(f"环比{_direction(figure['change'], figure['kind'])}")
    if figure["year_change"] is not None:
        parts.append(f"同比{_direction(figure['year_change'], figure['kind'])}")
    return "，".join(parts)


def _direction(value: float, kind: str) -> str:
    if value == 0:
        return "持平"
    word = "上升" if value > 0 else "下降"
    return word + change(abs(value), kind).lstrip("+")


def findings(content: dict) -> list[str]:
    """The sentences of 主要情况, in the order of the report."""
    figures = content["figures"]
    count = figures["order_count"]
    word = content["period_word"]
    sentences = []
    if not count["value"]:
        return [f"本{word}（{content['title']}）未登记工单。"]
    total = f"本{word}共登记工单{number(count['value'])}件，日均{number(content['daily_average'])}件"
    compared = _compared(count)
    sentences.append(total + (f"，{compared}" if compared else "") + "。")
    direct = content["direct"]
    if direct["total"]:
        sentences.append(f"其中直办{number(direct['direct'])}件（{percent(direct['direct_share'])}），转办"
                         f"{number(direct['transferred'])}件（{percent(direct['transferred_share'])}）"
                         + (f"，待分拨{number(direct['pending'])}件" if direct["pending"] else "") + "。")
    if content["channels"]:
        top = content["channels"][0]
        sentences.append(f"来源渠道以{top['label']}为主，{number(top['count'])}件，占{percent(top['share'])}。")
    if content.get("request_types"):
        listed = "、".join(f"{t['label']}{number(t['count'])}件" for t in content["request_types"][:3])
        sentences.append(f"按诉求类型，{listed}。")
    if content["categories"]:
        top = content["categories"][:3]
        listed = "、".join(f"{c['label']}{number(c['count'])}件（{percent(c['share'])}）" for c in top)
        sentences.append(f"诉求最多的事项大类为{listed}。")
    rates = [figures[name] for name in ("completion_rate", "on_time_rate", "satisfaction_rate")
             if figures[name]["value"] is not None]
    if rates:
        listed = "，".join(f"{f['label']}{figure_value(f)}" + (f"（{_compared(f)}）" if _compared(f) else "")
                          for f in rates)
        sentences.append(listed + "。")
    overdue = figures["overdue_count"]
    if overdue["value"]:
        sentences.append(f"本{word}登记的工单中目前仍有{number(overdue['value'])}件超期未办结。")
    below = content["below_thresholds"]
    if below:
        listed = "；".join(f"{b['unit']}{b['indicator']}{percent(b['value'])}" for b in below[:5])
        sentences.append(f"低于通报线的单位{len(below)}项：{listed}" + ("等" if len(below) > 5 else "") + "。")
    if content["hot_topics"]:
        topic = content["hot_topics"][0]
        sentences.append(f"热点诉求{len(content['hot_topics'])}个，最集中的是“{topic.get('label') or topic['topic']}”，"
                         f"{number(topic['size'])}件。")
    if content["alerts_total"]:
        kinds = "，".join(f"{kind}{number(n)}条" for kind, n in content["alerts_by_kind"].items())
        sentences.append(f"预警{number(content['alerts_total'])}条（{kinds}）。")
    return sentences
