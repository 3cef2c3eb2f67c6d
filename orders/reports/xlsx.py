"""The report as an Excel workbook (openpyxl): 汇总 (key figures, 直办/转办, findings), 承办单位, 事项类别 and 来源渠道,
numbers as numbers (rates formatted as percentages) so officials can sort and sum them."""
from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

_HEADER = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="EEF3F8")
_PERCENT = "0.0%"


def _header(sheet, row: list[str]) -> None:
    sheet.append(row)
    for cell in sheet[sheet.max_row]:
        cell.font, cell.fill = _HEADER, _HEADER_FILL


def _widths(sheet, widths: list[int]) -> None:
    for index, width in enumerate(widths):
        sheet.column_dimensions[chr(ord("A") + index)].width = width


def _summary(book: Workbook, content: dict, findings: list[str]) -> None:
    sheet = book.active
    sheet.title = "汇总"
    sheet.append([f"{content['city']}12345政务服务便民热线{content['period_label']}"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([f"{content['title']}（{content['start']} 至 {content['last_day']}）", None, None, None, None, None,
                  f"生成于 {content['generated_at']}"])
    sheet.append([])
    _header(sheet, ["指标", "本期", "上期（环比）", "环比变化", "去年同期（同比）", "同比变化", "单位"])
    for f in content["figures"].values():
        sheet.append([f["label"], f["value"], f["previous"], f["change"], f["year_ago"], f["year_change"], f["unit"]])
        row = sheet.max_row
        for column in "BCE":
            if f["kind"] == "rate":
                sheet[f"{column}{row}"].number_format = _PERCENT
        for column in "DF":   # a rate's change is in points, a count's relative: both read as percentages
            sheet[f"{column}{row}"].number_format = _PERCENT
    sheet.append(["日均工单数", content["daily_average"], None, None, None, None, "件"])
    sheet.append([])
    direct = content["direct"]
    _header(sheet, ["直办与转办", "件数", "占比"])
    for label, count, share in (("直办", direct["direct"], direct["direct_share"]),
                                ("转办", direct["transferred"], direct["transferred_share"]),
                                ("待分拨", direct["pending"], None), ("合计", direct["total"], None)):
        sheet.append([label, count, share])
        sheet[f"C{sheet.max_row}"].number_format = _PERCENT
    sheet.append(["口径", direct["definition"]])
    sheet.append([])
    sheet.append(["主要情况", "".join(findings)])
    sheet[f"B{sheet.max_row}"].alignment = Alignment(wrap_text=True, vertical="top")
    sheet.append(["说明", content["changes_definition"]])
    _widths(sheet, [22, 14, 14, 12, 16, 12, 20])


def _units(book: Workbook, content: dict) -> None:
    sheet = book.create_sheet("承办单位")
    _header(sheet, ["承办单位", "单位代码", "派遣总数", "按时办结", "超时办结", "未办结", "结案率", "按时办结率",
                    "超期未办结", "退单", "有责退单", "满意率", "不满意率", "回访样本（件）"])
    for u in content["units"]:
        sheet.append([u["name"], u["code"], u["order_count"], u["on_time_done"], u["late_done"], u["not_closed"],
                      u["completion_rate"], u["on_time_rate"], u["overdue_count"], u["returns"],
                      u["returns_at_fault"], u["satisfaction_rate"], u["dissatisfaction_rate"],
                      u["satisfaction_rate_denominator"]])
        for column in "GHLM":
            sheet[f"{column}{sheet.max_row}"].number_format = _PERCENT
    sheet.append([])
    _header(sheet, ["低于通报线的单位", "指标", "本期", "通报线", "样本（件）"])
    for b in content["below_thresholds"]:
        sheet.append([b["unit"], b["indicator"], b["value"], b["threshold"], b["sample"]])
        for column in "CD":
            sheet[f"{column}{sheet.max_row}"].number_format = _PERCENT
    _widths(sheet, [34, 14, 10, 10, 12, 10, 10, 16])


def _shares(book: Workbook, title: str, tables: list[tuple[str, list[dict]]]) -> None:
    sheet = book.create_sheet(title)
    for heading, rows in tables:
        _header(sheet, [heading, "件数", "占比"])
        for r in rows:
            sheet.append([r["label"], r["count"], r["share"]])
            sheet[f"C{sheet.max_row}"].number_format = _PERCENT
        sheet.append([])
    _widths(sheet, [34, 10, 10])


def _topics(book: Workbook, content: dict) -> None:
    sheet = book.create_sheet("热点与预警")
    _header(sheet, ["热点话题", "件数", "主要事项", "典型工单", "诉求摘要（已脱敏）"])
    for t in content["hot_topics"]:
        sheet.append([t.get("label") or t["topic"], t["size"], t["category"], "、".join(n for n in t["order_nos"] if n), t["sample"]])
    sheet.append([])
    _header(sheet, ["预警类型", "等级", "区域", "说明", "工单"])
    for a in content["alerts"]:
        sheet.append([a["kind"], a["severity"], (a["district"] or "") + (a["street"] or ""), a["reason"],
                      "、".join(n for n in a["order_nos"] if n)])
    sheet.append([])
    _header(sheet, ["日期", "工单数"])
    for row in content["trend"]:
        sheet.append([row["day"], row["count"]])
    _widths(sheet, [24, 8, 24, 40, 60])


def render_xlsx(*, content: dict, findings: list[str]) -> bytes:
    book = Workbook()
    _summary(book, content, findings)
    _units(book, content)
    _shares(book, "事项类别", [("事项大类", content["categories"]), ("事项子类（前10）", content["subcategories"])])
    _shares(book, "来源渠道与区县", [("来源渠道", content["channels"]), ("诉求类型", content["request_types"]),
                                  ("区县", content["districts"])])
    _topics(book, content)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
