"""The report as a PDF (reportlab): the CJK TrueType font from Debian's fonts-wqy-microhei embedded (subset), the
charts drawn by matplotlib with the same font, tables as the HTML has them."""
from __future__ import annotations

import io
from functools import lru_cache
from xml.sax.saxutils import escape

from orders.reports import formatting as fmt
from orders.reports.charts import CJK_FONT_NAME, cjk_font


@lru_cache(maxsize=1)
def _register_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(CJK_FONT_NAME, str(cjk_font()), subfontIndex=0))   # embedded as a subset
    return CJK_FONT_NAME


def _styles(font: str) -> dict:
    from reportlab.lib.styles import ParagraphStyle

    body = ParagraphStyle("body", fontName=font, fontSize=10, leading=15, wordWrap="CJK")
    return {"title": ParagraphStyle("title", parent=body, fontSize=18, leading=26, alignment=1),
            "sub": ParagraphStyle("sub", parent=body, fontSize=9, alignment=1, textColor="#666666"),
            "h2": ParagraphStyle("h2", parent=body, fontSize=13, leading=20, spaceBefore=10, spaceAfter=4, keepWithNext=1,
                                 textColor="#1f4e80"),
            "body": body, "note": ParagraphStyle("note", parent=body, fontSize=8, leading=11, textColor="#666666"),
            "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=10)}


def _table(rows: list[list], styles: dict, widths: list[float] | None = None):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    cells = [[Paragraph(escape(str(value)), styles["cell"]) for value in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef3f8")),
                               ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    return table


def _image(png: bytes, width: float):
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image

    reader = ImageReader(io.BytesIO(png))
    pixels_wide, pixels_high = reader.getSize()
    return Image(io.BytesIO(png), width=width, height=width * pixels_high / pixels_wide)


def render_pdf(*, content: dict, findings: list[str], charts: dict[str, bytes]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    font = _register_font()
    s = _styles(font)
    width = A4[0] - 36 * mm
    c = content
    title = f"{c['city']}12345政务服务便民热线{c['period_label']}"
    story = [Paragraph(title, s["title"]),
             Paragraph(f"{c['title']}（{c['start']} 至 {c['last_day']}） · 生成于 {c['generated_at']}", s["sub"]),
             Spacer(1, 6 * mm), Paragraph("一、主要情况", s["h2"]), Paragraph(escape("".join(findings)), s["body"]),
             Paragraph("二、总体指标", s["h2"])]
    rows = [["指标", "本期", "上期（环比）", "环比变化", "去年同期", "同比变化"]]
    for f in c["figures"].values():
        rows.append([f["label"], fmt.figure_value(f), fmt.figure_value(f | {"value": f["previous"]}),
                     fmt.change(f["change"], f["kind"]), fmt.figure_value(f | {"value": f["year_ago"]}),
                     fmt.change(f["year_change"], f["kind"])])
    rows.append(["日均工单数", fmt.number(c["daily_average"]), "", "", "", ""])
    story += [_table(rows, s, [width * 0.24] + [width * 0.152] * 5), Paragraph(c["changes_definition"], s["note"]),
              Paragraph("三、直办与转办", s["h2"])]
    d = c["direct"]
    story += [_table([["合计", "直办", "直办占比", "转办", "转办占比", "待分拨"],
                      [fmt.number(d["total"]), fmt.number(d["direct"]), fmt.percent(d["direct_share"]),
                       fmt.number(d["transferred"]), fmt.percent(d["transferred_share"]), fmt.number(d["pending"])]], s),
              Paragraph(escape("口径：" + d["definition"]), s["note"]), Paragraph("四、趋势、渠道与类别", s["h2"])]
    for name in ("trend", "categories", "channels"):
        if name in charts:
            story += [_image(charts[name], width), Spacer(1, 3 * mm)]
    if c.get("request_types"):
        story.append(_table([["诉求类型", "件数", "占比"]] + [[t["label"], fmt.number(t["count"]), fmt.percent(t["share"])]
                                                       for t in c["request_types"]], s))
    story.append(Paragraph("五、承办单位情况", s["h2"]))
    rows = [["承办单位", "派遣", "按时办结", "超时办结", "未办结", "结案率", "按时率", "超期", "退单", "不满意率"]]
    rows += [[u["name"], fmt.number(u["order_count"]), fmt.number(u["on_time_done"]), fmt.number(u["late_done"]),
              fmt.number(u["not_closed"]), fmt.percent(u["completion_rate"]), fmt.percent(u["on_time_rate"]),
              fmt.number(u["overdue_count"]), fmt.number(u["returns"]), fmt.percent(u["dissatisfaction_rate"])]
             for u in c["units"]]
    story.append(_table(rows, s, [width * 0.28] + [width * 0.08] * 9))
    lines = "、".join(f"{label}低于{fmt.percent(floor)}" for label, floor in c["thresholds"].items())
    story.append(Paragraph(f"低于通报线的单位（{lines}；样本不少于{c['min_unit_sample']}件）", s["h2"]))
    if c["below_thresholds"]:
        rows = [["单位", "指标", "本期", "通报线", "样本（件）"]]
        rows += [[b["unit"], b["indicator"], fmt.percent(b["value"]), fmt.percent(b["threshold"]), str(b["sample"])]
                 for b in c["below_thresholds"]]
        story.append(_table(rows, s, [width * 0.4, width * 0.18, width * 0.14, width * 0.14, width * 0.14]))
    else:
        story.append(Paragraph("本期没有低于通报线的单位。", s["body"]))
    story.append(Paragraph("六、热点诉求", s["h2"]))
    if c["hot_topics"]:
        rows = [["话题", "件数", "主要事项", "典型工单"]]
        rows += [[t.get("label") or t["topic"], str(t["size"]), t["category"] or "—",
                  "、".join(n for n in t["order_nos"] if n) + "：" + t["sample"]] for t in c["hot_topics"]]
        story.append(_table(rows, s, [width * 0.18, width * 0.08, width * 0.22, width * 0.52]))
    else:
        story.append(Paragraph("本期没有达到热点条件的诉求。", s["body"]))
    story.append(Paragraph("七、预警", s["h2"]))
    if c["alerts"]:
        rows = [["类型", "等级", "区域", "说明"]]
        rows += [[a["kind"], a["severity"], (a["district"] or "") + (a["street"] or ""), a["reason"]]
                 for a in c["alerts"]]
        story.append(_table(rows, s, [width * 0.12, width * 0.08, width * 0.2, width * 0.6]))
        story.append(Paragraph(f"共{c['alerts_total']}条，列出最严重的{len(c['alerts'])}条。", s["note"]))
    else:
        story.append(Paragraph("本期没有预警。", s["body"]))
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                                 bottomMargin=16 * mm, title=f"{title} {c['title']}", author="12345热线")
    document.build(story)
    return buffer.getvalue()
