"""How fast does `hotline orders import` bring in a city's past orders? (issue 10: 100,000 CSV rows in ≤ 5 minutes)

Run: .venv/bin/python benchmarks/orders_import.py [--rows 100000] [--seed 12345] [--keep DIR]
     [--out benchmarks/results/orders_import.json]

Writes N synthetic orders shaped like a 12345 export (Chinese headers; title + a 100–400 character body with
full-width punctuation, a caller's phone number in a third of them; 来电时间 over two years; 承办单位 as a KB
department's name, its code, or a unit the knowledge base does not know; 问题分类 from the city's taxonomy or the
city's own; 办结时间/状态/满意度/渠道/来电号码) to a temporary CSV, then imports it with the real service function
(orders.importer.import_orders, the real 长沙 knowledge base) into a fresh, migrated SQLite file in one transaction,
as the command does. It then imports the same file again (everything skipped) and reports both times. Only
figures are written.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from hotline.core.config import get_settings
from hotline.core.db import make_engine, session_factory, transaction
from hotline.core.migrate import upgrade
from knowledge_base.kb import load_knowledge_base
from orders.importer import import_orders
from orders.models import OrderEvent, WorkOrder
from routing.service import build_geocoder

HEADER = ["工单编号", "工单标题", "工单内容", "来电时间", "承办单位", "问题分类", "问题点位", "办结时间", "状态", "满意度",
          "渠道", "来电号码"]
OPENINGS = ["市民来电反映：", "来电人反映，", "市民通过微信公众号反映：", "网民留言：", "来电人称，", ""]
CLAUSES = ["近一个月以来情况越来越严重", "已经向物业和社区反映过多次，均未得到解决", "严重影响周边居民的正常生活和出行安全",
           "老人小孩出行很不方便", "晚上十一点以后还是这样，吵得无法入睡", "希望相关部门尽快到现场核查处理",
           "请依法查处并给予答复", "该问题已持续两年有余", "附近商户和居民意见很大", "来电人表示如不处理将向上级反映"]
PLACES = ["岳麓区望月湖街道桃子湖路18号", "雨花区高桥街道高桥大市场旁", "天心区坡子街步行街", "开福区四方坪街道某小区",
          "芙蓉区五一大道与芙蓉路交叉口", "长沙县星沙街道某工地", "望城区高塘岭街道某村", "岳麓区麓谷街道某产业园"]
UNKNOWN_UNITS = ["岳麓区住房保障服务中心", "长沙市某某管理处", "某某物业公司", "雨花区某某办公室"]
OWN_CATEGORIES = ["城乡建设>物业管理>物业服务", "其他>咨询>政策咨询", "民生服务>社区服务>其他"]
CHANNELS = ["12345热线", "12345热线", "12345热线", "微信公众号", "网站", "APP", ""]
STATES = ["已办结", "已办结", "已归档", "已回访", "办理中", ""]
RATINGS = ["满意", "满意", "基本满意", "不满意", "", "未评价"]


def synthetic_rows(n: int, kb, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    departments = list(kb.departments.values())
    taxonomy = list(kb.taxonomy.values())
    start = dt.datetime(2024, 1, 1, 8, 0)
    rows = []
    for i in range(n):
        node = rng.choice(taxonomy)
        body = rng.choice(OPENINGS) + rng.choice(PLACES) + "，" + node.description + "，" + "，".join(
            rng.sample(CLAUSES, rng.randint(3, 8))) + "！" * rng.randint(0, 2) + "。"
        phone = f"1{rng.choice('3589')}{rng.randrange(10 ** 9):09d}" if rng.random() < 0.35 else ""
        if phone:
            body += f"来电人：{rng.choice('张王李刘陈')}先生，联系电话：{phone}。"
        created = start + dt.timedelta(minutes=rng.randrange(2 * 365 * 24 * 60))
        state = rng.choice(STATES)
        finished = "" if state == "办理中" else (created + dt.timedelta(hours=rng.uniform(2, 300))).strftime(
            "%Y-%m-%d %H:%M:%S")
        dept = rng.choice(departments)
        unit = rng.choice([dept.name, dept.name, dept.code, rng.choice(UNKNOWN_UNITS)])
        category = ">".join(node.path) if rng.random() < 0.9 else rng.choice(OWN_CATEGORIES)
        rows.append([f"CS{created:%Y%m%d}{i:07d}", f"{node.level3}问题" if rng.random() < 0.8 else "", body,
                     created.strftime("%Y-%m-%d %H:%M:%S") if i % 3 else created.strftime("%Y/%m/%d %H:%M"),
                     unit, category, rng.choice(PLACES), finished, state, rng.choice(RATINGS) if finished else "",
                     rng.choice(CHANNELS), phone or rng.choice(["", "0731-8" + f"{rng.randrange(10 ** 7):07d}"])])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--keep", type=Path, help="write the CSV and database here instead of a temporary folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/orders_import.json"))
    args = parser.parse_args()

    kb = load_knowledge_base(get_settings().city_dir)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "orders_export.csv"
        database = folder / "orders_import.sqlite3"
        for leftover in folder.glob("orders_import.sqlite3*"):
            leftover.unlink()
        started = time.perf_counter()
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(synthetic_rows(args.rows, kb, args.seed))
        generated = time.perf_counter() - started
        url = f"sqlite:///{database}"
        geocoder = build_geocoder(get_settings())   # as `hotline orders import` does: places read from 问题点位/text
        upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        marks: dict[str, float] = {}

        def mark(name: str):
            return lambda n: marks.setdefault(name, time.perf_counter())

        started = time.perf_counter()
        with transaction(sessions) as session:
            first = import_orders(session, path=path, kb=kb, rows_read=mark("read"), to_store=mark("checked"),
                                  geocoder=geocoder)
        first_s = time.perf_counter() - started
        started_again = time.perf_counter()
        with transaction(sessions) as session:
            second = import_orders(session, path=path, kb=kb)
        second_s = time.perf_counter() - started_again
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(WorkOrder))
            events = session.scalar(select(func.count()).select_from(OrderEvent))
        engine.dispose()
        size_mb = path.stat().st_size / 2 ** 20
        db_mb = sum(p.stat().st_size for p in folder.glob("orders_import.sqlite3*")) / 2 ** 20

    report = {
        "rows": args.rows, "csv_mb": round(size_mb, 1), "generate_s": round(generated, 1),
        "import_s": round(first_s, 2),
        "read_s": round(marks["read"] - started, 2),
        "check_s": round(marks["checked"] - marks["read"], 2),
        "store_s": round(started + first_s - marks["checked"], 2),
        "rows_per_s": int(args.rows / first_s),
        "second_import_s": round(second_s, 2),
        "imported": first.imported, "second_imported": second.imported, "second_skipped": second.skipped_present,
        "stored_orders": stored, "stored_events": events, "database_mb": round(db_mb, 1),
        "department_matched": first.department_matched, "department_unmatched": first.department_unmatched,
        "category_matched": first.category_matched, "category_unmatched": first.category_unmatched,
        "placed_from_text": first.placed_from_text, "placed_from_unit": first.placed_from_unit,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"SQLite {__import__('sqlite3').sqlite_version}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
