"""The report as one self-contained HTML page: styles inline, charts as data: URIs, nothing fetched from elsewhere."""
from __future__ import annotations

import base64

from jinja2 import Environment, select_autoescape

from orders.reports import formatting

_TEMPLATE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{{ c.city }}12345热线{{ c.period_label }} {{ c.title }}</title>
<style>
body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 2em auto;
       max-width: 60em; color: #222; line-height: 1.6; }
h1 { text-align: center; font-size: 1.6em; margin-bottom: 0.2em; }
.sub { text-align: center; color: #666; margin-top: 0; }
h2 { border-left: 4px solid #2f6fb0; padding-left: 0.5em; font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
th { background: #eef3f8; }
.bad { color: #b3261e; font-weight: bold; }
.note { color: #666; font-size: 0.85em; }
img { max-width: 100%; }
</style>
</head>
<body>
<h1>{{ c.city }}12345政务服务便民热线{{ c.period_label }}</h1>
<p class="sub">{{ c.title }}（{{ c.start }} 至 {{ c.last_day }}） · 生成于 {{ c.generated_at }}</p>

<h2>一、主要情况</h2>
<p>{{ findings | join("") }}</p>

<h2>二、总体指标</h2>
<table>
<tr><th>指标</th><th>本期</th><th>上期（环比）</th><th>环比变化</th><th>去年同期（同比）</th><th>同比变化</th></tr>
{% for f in c.figures.values() %}
<tr><td>{{ f.label }}</td><td>{{ fmt.figure_value(f) }}</td>
<td>{{ fmt.figure_value(f | combine_value(f.previous)) }}</td><td>{{ fmt.change(f.change, f.kind) }}</td>
<td>{{ fmt.figure_value(f | combine_value(f.year_ago)) }}</td><td>{{ fmt.change(f.year_change, f.kind) }}</td></tr>
{% endfor %}
<tr><td>日均工单数</td><td>{{ fmt.number(c.daily_average) }}</td><td colspan="4"></td></tr>
</table>
<p class="note">{{ c.changes_definition }}</p>

<h2>三、直办与转办</h2>
<table>
<tr><th>合计</th><th>直办</th><th>直办占比</th><th>转办</th><th>转办占比</th><th>待分拨</th></tr>
<tr><td>{{ fmt.number(c.direct.total) }}</td><td>{{ fmt.number(c.direct.direct) }}</td>
<td>{{ fmt.percent(c.direct.direct_share) }}</td><td>{{ fmt.number(c.direct.transferred) }}</td>
<td>{{ fmt.percent(c.direct.transferred_share) }}</td><td>{{ fmt.number(c.direct.pending) }}</td></tr>
</table>
<p class="note">口径：{{ c.direct.definition }}</p>

<h2>四、来源渠道、诉求类型与类别</h2>
{% if charts.trend %}<img alt="每日工单量" src="{{ charts.trend }}">{% endif %}
{% for title, rows in (("来源渠道", c.channels), ("诉求类型", c.request_types), ("事项大类", c.categories), ("事项子类（前10）", c.subcategories), ("区县", c.districts)) %}
<table>
<tr><th>{{ title }}</th><th>件数</th><th>占比</th></tr>
{% for r in rows %}<tr><td>{{ r.label }}</td><td>{{ fmt.number(r.count) }}</td><td>{{ fmt.percent(r.share) }}</td></tr>{% endfor %}
</table>
{% endfor %}
{% if charts.categories %}<img alt="事项大类占比" src="{{ charts.categories }}">{% endif %}
{% if charts.channels %}<img alt="来源渠道占比" src="{{ charts.channels }}">{% endif %}

<h2>五、承办单位情况</h2>
<table>
<tr><th>承办单位</th><th>派遣总数</th><th>按时办结</th><th>超时办结</th><th>未办结</th><th>结案率</th><th>按时办结率</th>
<th>超期未办结</th><th>退单（有责）</th><th>满意率</th><th>不满意率</th></tr>
{% for u in c.units %}
<tr><td>{{ u.name }}</td><td>{{ fmt.number(u.order_count) }}</td><td>{{ fmt.number(u.on_time_done) }}</td>
<td>{{ fmt.number(u.late_done) }}</td><td>{{ fmt.number(u.not_closed) }}</td><td>{{ fmt.percent(u.completion_rate) }}</td>
<td>{{ fmt.percent(u.on_time_rate) }}</td><td>{{ fmt.number(u.overdue_count) }}</td>
<td>{{ fmt.number(u.returns) }}（{{ fmt.number(u.returns_at_fault) }}）</td>
<td>{{ fmt.percent(u.satisfaction_rate) }}</td><td>{{ fmt.percent(u.dissatisfaction_rate) }}</td></tr>
{% endfor %}
</table>
<h3>低于通报线的单位</h3>
<p class="note">通报线：{% for label, floor in c.thresholds.items() %}{{ label }}低于{{ fmt.percent(floor) }}{% if not loop.last %}、{% endif %}{% endfor %}（样本不少于{{ c.min_unit_sample }}件的单位）</p>
{% if c.below_thresholds %}
<table>
<tr><th>单位</th><th>指标</th><th>本期</th><th>通报线</th><th>样本（件）</th></tr>
{% for b in c.below_thresholds %}
<tr><td>{{ b.unit }}</td><td class="text">{{ b.indicator }}</td><td class="bad">{{ fmt.percent(b.value) }}</td>
<td>{{ fmt.percent(b.threshold) }}</td><td>{{ b.sample }}</td></tr>
{% endfor %}
</table>
{% else %}<p>本期没有低于通报线的单位。</p>{% endif %}

<h2>六、热点诉求</h2>
{% if c.hot_topics %}
<table>
<tr><th>话题</th><th>件数</th><th>主要事项</th><th>典型工单</th></tr>
{% for t in c.hot_topics %}
<tr><td>{{ t.label or t.topic }}</td><td>{{ t.size }}</td><td class="text">{{ t.category or "—" }}</td>
<td class="text">{{ t.order_nos | join("、") }}：{{ t.sample }}</td></tr>
{% endfor %}
</table>
{% else %}<p>本期没有达到热点条件的诉求。</p>{% endif %}
<p class="note">口径：{{ c.hot_topics_definition }}</p>

<h2>七、预警</h2>
{% if c.alerts %}
<table>
<tr><th>类型</th><th>等级</th><th>区域</th><th>说明</th></tr>
{% for a in c.alerts %}
<tr><td>{{ a.kind }}</td><td>{{ a.severity }}</td><td class="text">{{ a.district or "" }}{{ a.street or "" }}</td>
<td class="text">{{ a.reason }}</td></tr>
{% endfor %}
</table>
<p class="note">共{{ c.alerts_total }}条，列出最严重的{{ c.alerts | length }}条。</p>
{% else %}<p>本期没有预警。</p>{% endif %}

<h2>附：指标口径</h2>
<table>
{% for f in c.figures.values() %}<tr><td>{{ f.label }}</td><td class="text">{{ f.definition }}</td></tr>{% endfor %}
</table>
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENVIRONMENT.filters["combine_value"] = lambda figure, value: figure | {"value": value}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(*, content: dict, findings: list[str], charts: dict[str, bytes]) -> bytes:
    page = _ENVIRONMENT.from_string(_TEMPLATE).render(
        c=content, findings=findings, fmt=formatting, charts={name: data_uri(png) for name, png in charts.items()})
    return page.encode("utf-8")
