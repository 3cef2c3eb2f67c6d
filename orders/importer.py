"""Bulk import of a city's past work orders (CSV / .xlsx / JSONL), such as the 12345 system's own export.

Columns: the export's Chinese headers (工单编号, 工单标题, 工单内容, 来电时间, 承办单位, 问题分类 "大类>子类>细类",
问题点位, and if present 办结时间, 状态, 满意度, 渠道, 来电号码) or our own (order_no, title, text, created_at,
department, category, address, completed_at, state, satisfaction, channel, caller_phone). Other columns (序号,
来电人…) are ignored.

- All or nothing per file: every row is checked first; any bad row stops the file with `FILE:ROW:FIELD: reason`
  (ROW is the spreadsheet row, header = 1, as Excel shows it even when a cell holds line breaks; for JSONL the
  line number; FIELD is the column as the file names it) and nothing is stored. No message quotes a phone number
  or a complaint's text.
- Idempotent on the order number: an order number already in the store is skipped, never overwritten, so a second
  import of the same file changes nothing.
- Not routed (no embeddings): the orders are history. The text is title + "。" + content, masked for analytics
  (nlp.pii); only the last 4 digits of the caller's number are kept. The category is set when it is a 细类 of the
  knowledge base's taxonomy; the department when 承办单位 is a department code or exact name of the knowledge
  base. What did not match (the unit's name, the city's own category) is kept in the order's "import" event, the
  one event an imported order has, with the file and row it came from; `export_training_rows` reads it back.
- Times without an offset are the city's (Asia/Shanghai); stored in UTC. An order with a completion time is
  closed (办结) unless the file says it was rated or archived; without one it has the state the file says, or
  closed.
- Fast: written with SQLAlchemy Core multi-row inserts in chunks inside the caller's transaction.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ
from knowledge_base.kb import KnowledgeBase
from knowledge_base.loaders import DataFileError, read_rows
from nlp.normalize import DEFAULT_MAX_CHARS, InputError, check_text
from nlp.pii import mask_pii
from nlp.request_type import request_type
from orders.lifecycle import SATISFACTION, STATE_LABELS, State
from orders.models import OrderEvent, WorkOrder, utcnow
from orders.service import CHANNELS
from routing.geocode import Geocoder
from routing.history import iter_jsonl

IMPORT_ACTION = "import"
IMPORT_ACTOR = "import"
CHUNK = 500                       # rows per INSERT: 500 × 40 columns stays under SQLite's 32,766 parameters
SUFFIXES = {".csv", ".xlsx", ".jsonl", ".ndjson", ".json"}

# Our field -> the column names that mean it (ours first, then the 12345 export's).
COLUMNS: dict[str, tuple[str, ...]] = {
    "order_no": ("order_no", "工单编号", "工单号"),
    "title": ("title", "工单标题", "标题"),
    "text": ("text", "工单内容", "诉求内容"),
    "created_at": ("created_at", "来电时间", "登记时间"),
    "department": ("department", "承办单位", "主办单位"),
    "category": ("category", "问题分类"),
    "address": ("address", "问题点位", "事发地址"),
    "channel": ("channel", "渠道", "来源渠道"),
    "state": ("state", "状态", "工单状态"),
    "completed_at": ("completed_at", "办结时间"),
    "satisfaction": ("satisfaction", "满意度"),
    "caller_phone": ("caller_phone", "来电号码"),
}
REQUIRED = ("order_no", "text", "created_at")
_FIELD_OF = {name.lower(): key for key, names in COLUMNS.items() for name in names}

MAX_ORDER_NO = 32                 # work_orders.order_no is VARCHAR(32)
MAX_TITLE = 200
MAX_ADDRESS = 500
MAX_DEPARTMENT = 100
MAX_CATEGORY_LEVEL = 40
EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)   # before any 12345 hotline; an Excel zero date is 1899/1900
EXCEL_EXACT_INTEGERS = 10 ** 15   # Excel keeps 15 significant digits: a longer number has lost its last ones

_ORDER_NO = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_\-./]*$")
_CATEGORY_SEPARATORS = re.compile(r"\s*[>＞/／]\s*")
_TIME = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:\s*T?\s*(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?|\s*分)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$")

STATE_WORDS: dict[str, State] = {
    **{state.value: state for state in State},
    **{label: state for state, label in STATE_LABELS.items()},
    "待受理": State.RECEIVED, "登记": State.RECEIVED,
    "受理": State.ACCEPTED, "待派单": State.ACCEPTED,
    "派单": State.DISPATCHED, "已派发": State.DISPATCHED, "待签收": State.DISPATCHED,
    "签收": State.SIGNED, "退单": State.RETURNED, "已退回": State.RETURNED,
    "办理": State.HANDLING, "处理中": State.HANDLING, "在办": State.HANDLING, "延期": State.HANDLING,
    "已延期": State.HANDLING,
    "待审核": State.COMPLETED, "办结待审核": State.COMPLETED,
    "办结": State.CLOSED, "已完成": State.CLOSED, "完成": State.CLOSED, "已结案": State.CLOSED, "结案": State.CLOSED,
    "已办理": State.CLOSED,
    "回访": State.RATED, "已评价": State.RATED, "归档": State.ARCHIVED,
}
POST_CLOSE = {State.CLOSED, State.RATED, State.ARCHIVED}

CHANNEL_WORDS: dict[str, str] = {
    **{c: c for c in CHANNELS},
    "电话": "hotline", "热线": "hotline", "热线电话": "hotline", "12345": "hotline", "12345热线": "hotline",
    "来电": "hotline", "电话来电": "hotline",
    "微信": "wechat", "微信公众号": "wechat", "公众号": "wechat",
    "网站": "web", "网络": "web", "网上": "web", "网页": "web", "政府网站": "web", "门户网站": "web",
    "网络留言": "web", "留言板": "web", "市长信箱": "web", "书记信箱": "web",
    "手机app": "app", "客户端": "app", "网格": "grid", "网格员": "grid", "网格上报": "grid",
    "110联动": "110", "110转办": "110", "传感器": "sensor", "物联网": "sensor",
}
SATISFACTION_WORDS = {**{s: s for s in SATISFACTION}, "非常满意": "满意", "比较满意": "基本满意"}
BLANK_WORDS = {"", "无", "-", "—", "/", "未评价", "未回访"}   # an empty cell, said in words


@dataclass
class OrderRow:
    """One checked row, ready to store."""

    line: int
    order_no: str
    text: str
    created_at: dt.datetime                      # UTC
    channel: str
    state: State
    completed_at: dt.datetime | None = None      # UTC
    address: str | None = None
    department: str | None = None                # as the file says
    department_code: str | None = None           # when it is a KB department
    category: str | None = None                  # as the file says, levels joined by "/"
    category_code: str | None = None             # when it is a KB 细类
    category_path: str | None = None
    satisfaction: str | None = None
    caller_phone_last4: str | None = None
    state_in_file: str | None = None
    completed_in_file_dropped: bool = False      # an open order's completion time (a reopened order's last one)


@dataclass
class ImportResult:
    file: Path
    rows: int = 0
    new: int = 0                                 # not in the store yet: imported (or, in a dry run, would be)
    imported: int = 0
    skipped_present: int = 0                     # order numbers already in the store
    department_matched: int = 0                  # of the imported: 承办单位 is a KB department
    department_unmatched: int = 0                # named, but not a KB department (the name is kept in the event)
    department_missing: int = 0
    category_matched: int = 0
    category_unmatched: int = 0
    unmatched_departments: Counter = field(default_factory=Counter)
    placed_from_text: int = 0                    # district/street read from 问题点位 or the text by the gazetteer
    placed_from_unit: int = 0                    # no place found: the handling unit's own district/street
    dry_run: bool = False


# -- reading and checking --------------------------------------------------------------------------------------
def _cell_text(value) -> str:
    """A cell as text; an integer-valued spreadsheet number (430104001.0) without its decimals."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _records(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(row, record) pairs of the file and problems that stop it (unreadable lines)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError([f"{path}: unsupported file type {suffix!r} (use .csv, .xlsx or .jsonl)"])
    if not path.exists():
        raise DataFileError([f"{path}: file not found"])
    if suffix in {".csv", ".xlsx"}:
        # Exports from Chinese Windows' Excel are GB18030/GBK, not UTF-8.
        return [(r.row, r.data) for r in read_rows(path, encodings=("utf-8-sig", "gb18030"))], []
    records, problems = [], []
    for number, record, problem in iter_jsonl(path):
        if problem:
            problems.append(f"{path}:{problem.removeprefix('line ')}")
        else:
            records.append((number, record))
    return records, problems


def _columns(path: Path, names: Iterable[str], errors: list[str], where: str) -> dict[str, str]:
    """field -> the file's column name; two columns meaning the same field are an error."""
    found: dict[str, str] = {}
    for name in names:
        key = _FIELD_OF.get(str(name).strip().lower())
        if key is None:
            continue
        if key in found:
            errors.append(f"{where}: columns {found[key]} and {name} both give {key}")
        else:
            found[key] = name
    return found


def parse_time(value) -> dt.datetime:
    """A moment from a cell: a spreadsheet date, ISO 8601, 2024/3/5 14:23, 2024年3月5日 14时23分…; naive = the city's
    time. Returned in UTC. ValueError says what is wrong."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("a number, not a date and time (format the column as a date or as text)")
    else:
        match = _TIME.match(str(value).strip())
        if not match:
            raise ValueError("not a date and time (expected e.g. 2024-03-05 14:23:00 or 2024/3/5 14:23)")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                                 int((fraction or "0").ljust(6, "0")))
        except ValueError as exc:
            raise ValueError(f"not a valid date and time ({exc})") from None
        if offset:
            offset = offset.replace(":", "")
            moment = moment.replace(tzinfo=dt.UTC if offset == "Z" else dt.timezone(
                (1 if offset[0] == "+" else -1) * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CITY_TZ)
    return moment.astimezone(dt.UTC)


def parse_category(value) -> list[str]:
    """The levels of "大类>子类>细类" (also with ＞ or /, or a JSON list); ValueError if it is not 1–3 levels."""
    if isinstance(value, (list, tuple)):
        parts = [_cell_text(v) for v in value]
    else:
        parts = _CATEGORY_SEPARATORS.split(_cell_text(value))
    if any(not p for p in parts):
        raise ValueError('an empty level: expected "大类>子类>细类"')
    if len(parts) > 3:
        raise ValueError(f'{len(parts)} levels: expected at most 3, "大类>子类>细类"')
    if any(len(p) > MAX_CATEGORY_LEVEL for p in parts):
        raise ValueError(f'a level longer than {MAX_CATEGORY_LEVEL} characters: expected "大类>子类>细类"')
    return parts


class _Checker:
    """Checks rows of one file against the knowledge base; collects `file:row:field: reason` problems."""

    def __init__(self, path: Path, kb: KnowledgeBase, *, channel: str, now: dt.datetime, max_text_chars: int):
        self.path, self.channel, self.now, self.max_text_chars = path, channel, now, max_text_chars
        self.departments = kb.departments
        self.department_names: dict[str, str] = {}
        for dept in kb.departments.values():
            self.department_names.setdefault(dept.name, dept.code)
        self.categories = {tuple(node.path): node for node in kb.taxonomy.values()}
        self.category_codes = kb.taxonomy
        self.errors: list[str] = []
        self.first_row: dict[str, int] = {}

    def check(self, line: int, record: dict, columns: dict[str, str]) -> OrderRow | None:
        errors_before = len(self.errors)

        def fail(key: str, reason: str) -> None:
            self.errors.append(f"{self.path}:{line}:{columns.get(key, key)}: {reason}")

        def text(key: str) -> str:
            return _cell_text(record.get(columns[key])) if key in columns else ""

        raw_no = record.get(columns["order_no"]) if "order_no" in columns else None
        order_no = text("order_no")
        if not order_no:
            fail("order_no", "missing: every order needs its order number")
        elif isinstance(raw_no, (int, float)) and not isinstance(raw_no, bool) and abs(raw_no) >= EXCEL_EXACT_INTEGERS:
            fail("order_no", "a number too long for a spreadsheet number (its last digits are lost): "
                             "format the column as text and export again")
        elif len(order_no) > MAX_ORDER_NO:
            fail("order_no", f"{len(order_no)} characters; at most {MAX_ORDER_NO}")
        elif not _ORDER_NO.match(order_no):
            fail("order_no", f"{order_no!r}: letters, digits and - _ . / only")
        elif order_no in self.first_row:
            fail("order_no", f"order number {order_no} is already row {self.first_row[order_no]} of this file")
        else:
            self.first_row[order_no] = line

        title = text("title")
        if len(title) > MAX_TITLE:
            fail("title", f"{len(title)} characters; at most {MAX_TITLE}")
        elif "\x00" in title:
            fail("title", "contains NUL characters (binary data)")
        content = record.get(columns["text"]) if "text" in columns else None
        if content is None or (isinstance(content, str) and not content.strip()):
            fail("text", "missing: the complaint's content is empty")
            content = ""
        else:
            try:
                content = check_text(_cell_text(content), max_chars=self.max_text_chars)
            except InputError as exc:
                fail("text", str(exc))
                content = ""
        full_text = ""
        if content:
            separator = "" if not title or title[-1] in "。！？!?；;…" else "。"
            full_text = f"{title}{separator}{content}" if title else content

        created = completed = None
        if not text("created_at"):
            fail("created_at", "missing: when the call came in")
        else:
            try:
                created = parse_time(record.get(columns["created_at"]))
                if created < EARLIEST:
                    fail("created_at", f"{created.astimezone(CITY_TZ):%Y-%m-%d} is before 1990")
                elif created > self.now + dt.timedelta(days=1):
                    fail("created_at", f"{created.astimezone(CITY_TZ):%Y-%m-%d %H:%M} is in the future")
            except ValueError as exc:
                fail("created_at", str(exc))
        if text("completed_at") and text("completed_at") not in BLANK_WORDS:
            try:
                completed = parse_time(record.get(columns["completed_at"]))
                if created and completed < created:
                    fail("completed_at", "before the order's 来电时间 (created_at)")
                elif completed > self.now + dt.timedelta(days=1):
                    fail("completed_at", f"{completed.astimezone(CITY_TZ):%Y-%m-%d %H:%M} is in the future")
            except ValueError as exc:
                fail("completed_at", str(exc))

        channel = self.channel
        if text("channel"):
            channel = CHANNEL_WORDS.get(text("channel")) or CHANNEL_WORDS.get(text("channel").lower())
            if channel is None:
                fail("channel", f"unknown channel {text('channel')!r}: one of {', '.join(CHANNELS)} "
                                "(or 电话/热线, 微信, 网站/网络/市长信箱, APP/客户端, 网格, 110联动, 传感器)")

        state_word = text("state")
        file_state = None
        if state_word:
            file_state = STATE_WORDS.get(state_word) or STATE_WORDS.get(state_word.lower())
            if file_state is None:
                fail("state", f"unknown state {state_word!r}: one of {'、'.join(STATE_LABELS.values())} "
                              f"(or {', '.join(State)})")
        if completed is not None and file_state in (None, State.COMPLETED, State.CLOSED):
            state = State.CLOSED
        else:
            state = file_state or State.CLOSED
        dropped = False
        if completed is not None and state not in POST_CLOSE:
            completed, dropped = None, True          # an open order (e.g. reopened) is not finished now

        satisfaction = None
        if text("satisfaction") not in BLANK_WORDS:
            satisfaction = SATISFACTION_WORDS.get(text("satisfaction"))
            if satisfaction is None:
                fail("satisfaction", f"unknown satisfaction {text('satisfaction')!r}: one of {'/'.join(SATISFACTION)}, "
                                     "or empty / 未评价")

        last4 = None
        phone = text("caller_phone")
        digits = re.sub(r"\D", "", phone)
        if digits:                                  # no digits (无, 匿名): no number; the value is never echoed
            if not 7 <= len(digits) <= 20:
                fail("caller_phone", "not a phone number (7 to 20 digits expected)")
            else:
                last4 = digits[-4:]

        address = text("address") or None
        if address and len(address) > MAX_ADDRESS:
            fail("address", f"{len(address)} characters; at most {MAX_ADDRESS}")

        department = text("department") if text("department") not in BLANK_WORDS else None
        department_code = None
        if department:
            if len(department) > MAX_DEPARTMENT:
                fail("department", f"{len(department)} characters; at most {MAX_DEPARTMENT}")
            elif department in self.departments:
                department_code = department
            else:
                department_code = self.department_names.get(department)

        category = category_code = category_path = None
        raw_category = record.get(columns["category"]) if "category" in columns else None
        given = any(_cell_text(v) for v in raw_category) if isinstance(raw_category, (list, tuple)) else \
            _cell_text(raw_category) not in BLANK_WORDS
        if given:
            try:
                code = _cell_text(raw_category)
                if re.fullmatch(r"\d{6}", code) and code in self.category_codes:
                    levels = self.category_codes[code].path
                else:
                    levels = parse_category(raw_category)
                category = "/".join(levels)
                node = self.categories.get(tuple(levels))
                if node is not None:
                    category_code, category_path = node.code, "/".join(node.path)
            except ValueError as exc:
                fail("category", str(exc))

        if len(self.errors) > errors_before:
            return None
        return OrderRow(line, order_no, full_text, created, channel, state, completed, address, department,
                        department_code, category, category_code, category_path, satisfaction, last4,
                        state_word or None, dropped)


def read_order_file(path: Path, *, kb: KnowledgeBase, channel: str = "hotline", now: dt.datetime | None = None,
                    max_text_chars: int = DEFAULT_MAX_CHARS, rows_read: Callable[[int], None] | None = None,
                    checked: Callable[[int], None] | None = None) -> list[OrderRow]:
    """Every row of the file checked, or DataFileError listing each problem as file:row:field."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    records, problems = _records(path)
    if problems:
        raise DataFileError(problems)
    if not records:
        raise DataFileError([f"{path}: no data rows"])
    if rows_read:
        rows_read(len(records))
    checker = _Checker(path, kb, channel=channel, now=now or utcnow(), max_text_chars=max_text_chars)
    tabular = path.suffix.lower() in {".csv", ".xlsx"}
    columns = _columns(path, records[0][1].keys(), checker.errors, f"{path}:1") if tabular else None
    if tabular:
        missing = [key for key in REQUIRED if key not in columns]
        if missing:
            names = ", ".join(f"{COLUMNS[k][1]} ({k})" for k in missing)
            raise DataFileError([f"{path}:1: missing column(s) {names}", *checker.errors])
        if checker.errors:
            raise DataFileError(checker.errors)
    rows: list[OrderRow] = []
    for number, (line, record) in enumerate(records, start=1):
        row_columns = columns if tabular else _columns(path, record.keys(), checker.errors, f"{path}:{line}")
        row = checker.check(line, record, row_columns)
        if row is not None:
            rows.append(row)
        if checked and number % 1000 == 0:
            checked(1000)
    if checked:
        checked(len(records) % 1000)
    if checker.errors:
        raise DataFileError(checker.errors)
    return rows


# -- storing ---------------------------------------------------------------------------------------------------
def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _present(session: Session, numbers: list[str]) -> set[str]:
    column = WorkOrder.__table__.c.order_no
    found: set[str] = set()
    for part in _chunks(numbers, 900):
        found.update(session.scalars(select(column).where(column.in_(part))))
    return found


# The place is read from 问题点位 and the head of the text (where a letter names it); the gazetteer only, no model.
PLACE_TEXT_CHARS = 300


def _place(row: OrderRow, dept, geocoder: Geocoder | None) -> tuple[str | None, str | None, str | None, bool]:
    """(district adcode, street id, community, found in the text): the order's place for indicators and duplicate
    search. Without a place in the text, the handling unit's own: a district bureau's district, a street office's
    street."""
    if geocoder is not None:
        geo = geocoder.geocode(" ".join(filter(None, [row.address, row.text[:PLACE_TEXT_CHARS]])))
        if geo.district and not geo.outside_city:
            return geo.district["adcode"], geo.street["id"] if geo.street else None, geo.community, True
    return (dept.district_adcode or None) if dept else None, (dept.street_id or None) if dept else None, None, False


def _order_values(row: OrderRow, kb: KnowledgeBase, now: dt.datetime, geocoder: Geocoder | None = None,
                  result: ImportResult | None = None) -> dict:
    dept = kb.departments.get(row.department_code) if row.department_code else None
    district, street, community, from_text = _place(row, dept, geocoder)
    if result is not None:
        result.placed_from_text += from_text
        result.placed_from_unit += not from_text and bool(district or street)
    return {
        "order_no": row.order_no, "channel": row.channel, "state": row.state.value, "text": row.text,
        "text_masked": mask_pii(row.text), "request_type": request_type(row.text), "caller_phone": None, "caller_phone_last4": row.caller_phone_last4,
        "caller_openid": None, "idempotency_key": None, "request_hash": None, "lat": None, "lng": None,
        "address": row.address, "district_adcode": district, "street_id": street,
        "community": community, "kb_item_id": None, "category_code": row.category_code, "category_path": row.category_path,
        "department_code": row.department_code, "handler": None, "urgency": "非紧急", "tags": [], "sentiment": None,
        "time_limit_days": None, "deadline_at": None, "created_at": row.created_at, "accepted_at": None,
        "first_dispatched_at": None, "dispatched_at": None, "completed_at": row.completed_at,
        "closed_at": row.completed_at if row.state in POST_CLOSE else None, "updated_at": now,
        "satisfaction": row.satisfaction, "reopen_count": 0, "return_count": 0, "parent_id": None, "role": None,
        "version": 1,
    }


def _event_values(order_id: int, row: OrderRow, source: str, now: dt.datetime) -> dict:
    data: dict = {"file": source, "row": row.line}
    comment = f"导入：{source} 第{row.line}行"
    if row.department and not row.department_code:
        data["department_name"] = row.department
        comment += f"；承办单位“{row.department}”（知识库中无此单位）"
    if row.category and not row.category_code:
        data["category"] = row.category
    if row.state_in_file:
        data["state_in_file"] = row.state_in_file
    if row.completed_in_file_dropped:
        data["completed_at_in_file_dropped"] = True
    return {"order_id": order_id, "seq": 1, "action": IMPORT_ACTION, "from_state": None, "to_state": row.state.value,
            "actor": IMPORT_ACTOR, "actor_role": "system", "department_code": row.department_code,
            "comment": comment, "data": data, "at": now}


def import_orders(session: Session, *, path: Path, kb: KnowledgeBase, channel: str = "hotline",
                  dry_run: bool = False, now: dt.datetime | None = None, max_text_chars: int = DEFAULT_MAX_CHARS,
                  rows_read: Callable[[int], None] | None = None, checked: Callable[[int], None] | None = None,
                  to_store: Callable[[int], None] | None = None,
                  stored: Callable[[int], None] | None = None, geocoder: Geocoder | None = None) -> ImportResult:
    """Check the whole file, then add its orders that are not in the store yet, in the caller's transaction.

    Raises DataFileError (file:row:field problems) before anything is written. `rows_read(n)`: rows in the file;
    `checked(n)`: rows checked; `to_store(n)`: new orders about to be written; `stored(n)`: orders written. With
    `dry_run` nothing is written and the result says what would be. With `geocoder`, each order's district, street
    and community are read from its 问题点位 and text (else the handling unit's place is used)."""
    now = now or utcnow()
    rows = read_order_file(path, kb=kb, channel=channel, now=now, max_text_chars=max_text_chars,
                           rows_read=rows_read, checked=checked)
    result = ImportResult(path, rows=len(rows), dry_run=dry_run)
    present = _present(session, [r.order_no for r in rows])
    new = [r for r in rows if r.order_no not in present]
    result.new, result.skipped_present = len(new), len(rows) - len(new)
    for row in new:
        if row.department_code:
            result.department_matched += 1
        elif row.department:
            result.department_unmatched += 1
            result.unmatched_departments[row.department] += 1
        else:
            result.department_missing += 1
        if row.category_code:
            result.category_matched += 1
        elif row.category:
            result.category_unmatched += 1
    if dry_run or not new:
        return result
    if to_store:
        to_store(len(new))
    orders, events = WorkOrder.__table__, OrderEvent.__table__
    source = path.name
    try:
        for part in _chunks(new, CHUNK):
            inserted = session.execute(
                insert(orders).returning(orders.c.id, orders.c.order_no, sort_by_parameter_order=True),
                [_order_values(row, kb, now, geocoder, result) for row in part]).all()
            ids = {order_no: order_id for order_id, order_no in inserted}
            session.execute(insert(events), [_event_values(ids[row.order_no], row, source, now) for row in part])
            result.imported += len(part)
            if stored:
                stored(len(part))
    except IntegrityError:
        raise DataFileError([f"{path}: another import of the same orders ran at the same time; nothing was "
                             "stored, run it again"]) from None
    return result


# -- reading back ----------------------------------------------------------------------------------------------
def export_training_rows(session: Session, *, before: dt.datetime | None = None) -> list[dict]:
    """{text, category, department} of every closed top-level order (办结, 回访, 归档) with a handling unit, oldest
    first: what `hotline train` can learn from the store. The text is the masked text (no phone or ID number may end
    up in a model); department is the KB code, or the unit's name as an import found it; category is
    "大类/子类/细类" from the taxonomy, or the import's own category, or None."""
    imported = {order_id: data or {} for order_id, data in session.execute(
        select(OrderEvent.order_id, OrderEvent.data).where(OrderEvent.action == IMPORT_ACTION))}
    query = (select(WorkOrder.id, WorkOrder.text_masked, WorkOrder.category_path, WorkOrder.department_code)
             .where(WorkOrder.parent_id.is_(None), WorkOrder.state.in_([s.value for s in POST_CLOSE]))
             .order_by(WorkOrder.created_at, WorkOrder.id))
    if before is not None:  # orders received before this moment only (a model evaluated on what came later)
        query = query.where(WorkOrder.created_at < before)
    rows = []
    for order_id, text, category_path, department_code in session.execute(query):
        data = imported.get(order_id, {})
        department = department_code or data.get("department_name")
        if not department or not text:
            continue
        rows.append({"text": text, "category": category_path or data.get("category"), "department": department})
    return rows
