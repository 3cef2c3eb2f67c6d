"""Extraction of phones, ID numbers, order numbers, times, the address span and the entity involved."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# Mobile numbers, optionally +86 and split by spaces/dashes (agents and ASR write 138 1234 5678; a Chinese input
# method in full-width mode types 138－1234－5678, and normalize() leaves punctuation as it is).
_SEP = r"[-\s\uff0d\u2010-\u2014]?"
_MOBILE = re.compile(rf"(?<!\d)(?:\+?86{_SEP})?(1[3-9]\d){_SEP}(\d{{4}}){_SEP}(\d{{4}})(?!\d)")
_LANDLINE = re.compile(rf"(?<!\d)(0731|0\d{{2,3}}){_SEP}(\d{{3,4}}){_SEP}(\d{{4}})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(\d{6})(\d{8})(\d{3})([\dXx])(?![\dA-Za-z])")
_ORDER_NUMBER = re.compile(
    r"(?:工单|单|受理|流水|订单)(?:编?号|号码)\s*(?:是|为|：|:)?\s*([A-Za-z]{0,4}\d[A-Za-z0-9\-]{5,24})"
    r"|(?<![A-Za-z0-9])((?:CS|HL|GD)\d{8,18})(?![A-Za-z0-9])"
)
_TIME = re.compile(
    r"(?:\d{4}年)?\d{1,2}月\d{1,2}[日号](?:[上下]午|晚上|凌晨|中午)?(?:\d{1,2}[点:：]\d{0,2}分?)?"
    r"|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:\s*\d{1,2}:\d{2})?"
    r"|(?:今天|昨天|前天|昨晚|今早|今晚|上周[一二三四五六日天]?|本周|这周|上个月|本月|这个月|去年|今年|最近|近期)"
    r"(?:[上下]午|晚上|凌晨|中午|早上)?(?:\d{1,2}[点:：](?:\d{1,2}分?|半)?)?"
    r"|(?:凌晨|半夜|深夜|晚上|早上|中午|下午|上午)\s*\d{1,2}\s*[点:：](?:\d{1,2}分?|半)?"
    r"|\d{1,2}:\d{2}"
)
_ADDRESS_UNIT = (
    r"(?:省|市|区|县|街道|镇|乡|村|社区|组|路|街|大道|巷|弄|道|桥|小区|花园|公寓|大厦|广场|市场|中心|苑|府|城|园|湾|庭|郡|居|"
    r"里|坊|寓|期|栋|幢|座|号楼|号|单元|楼|层|室|门面|门口|旁边|附近|对面|路口|交叉口)"
)
_ADDRESS = re.compile(
    rf"(?:[\u4e00-\u9fa5A-Za-z0-9]{{1,14}}?{_ADDRESS_UNIT})(?:[\u4e00-\u9fa5A-Za-z0-9\-]{{0,14}}?{_ADDRESS_UNIT}){{1,8}}"
)
_SUBJECT_SUFFIX = (
    r"(?:有限责任公司|股份有限公司|有限公司|分公司|公司|集团|酒店|宾馆|饭店|餐馆|餐厅|酒楼|烧烤店|烧烤摊|大排档|夜宵店|"
    r"火锅店|奶茶店|便利店|超市|商场|药店|药房|诊所|医院|卫生院|学校|小学|中学|幼儿园|培训机构|培训学校|驾校|KTV|网吧|"
    r"健身房|游泳馆|美容院|理发店|洗车店|汽修厂|修理厂|4S店|物业公司|物业|工地|项目部|加油站|菜市场|农贸市场|工厂|厂)"
)
_SUBJECT = re.compile(rf"([\u4e00-\u9fa5A-Za-z0-9·]{{2,16}}?{_SUBJECT_SUFFIX})")
# Words that sit before a subject but are not part of its name.
# Whatever stands before one of these is context (place, relation), not part of the subject's name.
_SUBJECT_CUT = re.compile(r".*(?:那家|这家|一家|有家|那个|这个|一个|有个|楼下|楼上|隔壁|对面|旁边|门口|附近|里面|里的|的|号|栋|路|街|区|镇|村|我家|我们|说|在|是|和|跟|被)")
_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def valid_id_number(number: str) -> bool:
    """GB 11643 check digit of an 18-digit resident ID number."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _WEIGHTS))
    return "10X98765432"[total % 11] == number[17].upper()


@dataclass
class Span:
    text: str
    start: int
    end: int
    kind: str
    value: str = ""


def find_phones(text: str) -> list[Span]:
    spans = [Span(m.group(0), m.start(), m.end(), "phone", "".join(m.groups())) for m in _MOBILE.finditer(text)]
    taken = [(s.start, s.end) for s in spans]
    for m in _LANDLINE.finditer(text):
        if not any(a <= m.start() < b for a, b in taken):
            spans.append(Span(m.group(0), m.start(), m.end(), "landline", "".join(m.groups())))
    return spans


def _plausible_birth(number: str) -> bool:
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    return 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31


def find_id_numbers(text: str, *, strict: bool = True) -> list[Span]:
    """Resident ID numbers. strict: check digit must match (extraction); loose: a plausible
    birth date is enough (masking: a mistyped ID is still personal data)."""
    check = valid_id_number if strict else _plausible_birth
    return [Span(m.group(0), m.start(), m.end(), "id_number", m.group(0).upper())
            for m in _ID_NUMBER.finditer(text) if check(m.group(0))]


def find_order_numbers(text: str) -> list[Span]:
    out = []
    for m in _ORDER_NUMBER.finditer(text):
        value = m.group(1) or m.group(2)
        group = 1 if m.group(1) else 2
        # A phone or ID number after 单号 is not an order number.
        if _MOBILE.fullmatch(value) or valid_id_number(value):
            continue
        out.append(Span(value, m.start(group), m.end(group), "order_number", value.upper()))
    return out


def find_times(text: str) -> list[Span]:
    return [Span(m.group(0), m.start(), m.end(), "time", m.group(0)) for m in _TIME.finditer(text) if m.group(0)]


def _blank_personal_numbers(text: str) -> str:
    """`text` with phone and ID numbers (loose, as for masking) blanked out, same length: a span found in it
    never runs into one ("电话13812345678住望月湖社区" is not an address starting at the number)."""
    spans = find_phones(text) + find_id_numbers(text, strict=False)
    if not spans:
        return text
    chars = list(text)
    for s in spans:
        chars[s.start:s.end] = " " * (s.end - s.start)
    return "".join(chars)


def find_address_spans(text: str) -> list[Span]:
    return [Span(m.group(0), m.start(), m.end(), "address", m.group(0))
            for m in _ADDRESS.finditer(_blank_personal_numbers(text))]


def find_subjects(text: str) -> list[Span]:
    """涉事主体: the company, shop, compound or school the complaint is about, normalised."""
    out: list[Span] = []
    for m in _SUBJECT.finditer(_blank_personal_numbers(text)):
        raw = m.group(1)
        suffix = re.search(_SUBJECT_SUFFIX + "$", raw)
        head = raw[: suffix.start()] if suffix else raw
        cut = _SUBJECT_CUT.match(head)
        start = m.start(1) + (cut.end() if cut else 0)
        name = text[start:m.end(1)]
        out.append(Span(name, start, m.end(1), "subject", name))
    return out


def extract_entities(text: str) -> dict[str, list[dict]]:
    return {
        "phones": [asdict(s) for s in find_phones(text)],
        "id_numbers": [asdict(s) for s in find_id_numbers(text)],
        "order_numbers": [asdict(s) for s in find_order_numbers(text)],
        "times": [asdict(s) for s in find_times(text)],
        "addresses": [asdict(s) for s in find_address_spans(text)],
        "subjects": [asdict(s) for s in find_subjects(text)],
    }
