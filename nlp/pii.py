"""Masking of personal data for logs, exports and output: phones (also full-width, Chinese numerals, any grouping),
resident ID numbers (18 and old 15 digits, spaced), bank cards, e-mail, licence plates, room numbers, and names
given in caller fields or introduced by the caller (我叫李建国 → 我叫李**).

Numbers are found on a same-length view of the text (full-width → ASCII, runs of 7+ Chinese numerals → digits),
so every span found maps back to the original characters. Ordinary text (dates, amounts, house numbers on a
road, order numbers) is left as it is.
"""
from __future__ import annotations

import logging
import re

from nlp.entities import find_id_numbers, find_phones

_NAMED_CALLER = re.compile(r"((?:来电人|联系人|姓名|诉求人|投诉人|户主)(?:姓名)?[:：\s]*)([\u4e00-\u9fa5]{1,3}?)([\u4e00-\u9fa5]{1,2})(?=[，,。；;\s\d(（]|先生|女士|$)")

# Common surnames (single and compound): a self-introduced name starts with one of them.
_COMPOUND_SURNAMES = "欧阳|司马|诸葛|上官|东方|皇甫|令狐|慕容|公孙|长孙|尉迟|夏侯|宇文|司徒|端木|澹台|南宫|独孤"
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
             "姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤"
             "温康施文牛樊葛邢齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕季裴霍"
             "涂成苗谷盛曲翁冉骆蓝游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农司卓古吉缪简车项芦麦褚娄窦戚岑景党"
             "宫费卜冷晏席卫米柏宗瞿桂佟臧闵苟邬边卞姬仇栾隋刁沙荣巫寇桑郎甄丛仲虞敖巩佘池麻苑迟邝")
# Words that follow 我是/本人 and start with a surname character but are not a name.
_NOT_NAMES = ("党员", "房东", "车主", "周边", "高层", "高龄", "高三", "高二", "高一", "万达", "华润", "时候", "于是",
              "文员", "司机", "全家", "全体", "明天", "常住", "路人", "老人", "何时", "单位", "金融", "石油", "应该",
              "商户", "商家", "向您", "和我", "连续", "宁乡", "安置", "安装", "施工", "管理", "江边", "湘江", "高新", "岳麓", "开福", "天心", "芙蓉", "雨花", "望城",
              "浏阳", "宁乡", "于今", "于昨", "于前", "于本", "于上", "于下", "于当", "于近")
_TITLES = ("师傅", "老师", "总", "经理", "阿姨", "大爷", "先生", "女士", "医生", "主任", "书记", "局长", "科长", "队长")
_NAME_FILLER = set("的了是在住想要这那个们和跟说也都就还把被给对从向到于已经因为所以但在家里人员户主")
_INTRODUCED = re.compile(
    rf"(我叫|我名叫|我的名字叫|我的名字是|我姓名是|本人叫|本人姓名|本人名叫|我是|本人是|本人)[:：\s]?"
    rf"((?:{_COMPOUND_SURNAMES})|[{_SURNAMES}])([\u4e00-\u9fa5]{{1,2}})"
    r"(?=[，,。；;！!？?、\s\d（(：:]|$|电话|手机|联系|家住|住在|住|反映|投诉|来电|想|要|现|在|，|的)")

_CN_DIGITS = str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")
_CN_RUN = re.compile(r"[零〇一二三四五六七八九幺两](?:[\s\-－—]?[零〇一二三四五六七八九幺两]){6,}")
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# A run of digits with single spaces or dashes between groups (an optional X ends an ID number).
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9])\d(?:[ \-－—]?\d){10,18}(?:[ \-]?[Xx])?(?![A-Za-z0-9])")
_CARD_WORDS = re.compile(r"(?:卡号|银行卡|储蓄卡|信用卡|借记卡|账号|帐号|卡)[:：\s是为]{0,3}$")
_ORDER_WORDS = re.compile(r"(?:单号|编号|工单|流水号|订单号?|快递)[:：\s是为]{0,3}$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_PLATE = re.compile(r"([京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Za-hj-np-z])"
                    r"([·•・.\s\-]?)([A-HJ-NP-Za-hj-np-z0-9]{4,6}[挂学警]?)(?![A-Za-z0-9])")
# Room numbers: 501室 / 1203房 / 2单元501 / 12栋1203 (the building and unit stay, the door goes).
_ROOM = re.compile(r"(?:(?<=单元)|(?<=栋)|(?<=幢)|(?<=座)|(?<=号楼)|(?<=楼)|(?<=-))(\d{3,4})(?![\d年月日号元米块路街.:：%万])"
                   r"|(?<!\d)(\d{3,4})(?=室|房(?![租价产屋子贷])|号房)")


def mask_phone(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 11 else digits[:2] + "****" + digits[-2:]


def mask_id_number(number: str) -> str:
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def _numeric_view(text: str) -> str:
    """Same length as `text`: full-width characters as ASCII, runs of 7+ Chinese numerals as digits."""
    view = text.translate(_FULL_WIDTH)
    if _CN_RUN.search(view):
        view = _CN_RUN.sub(lambda m: m.group(0).translate(_CN_DIGITS), view)
    return view


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _birth_ok(year: int, month: int, day: int) -> bool:
    return 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31


def _classify_run(digits: str, before: str) -> str | None:
    """What a run of digits (separators dropped) is, if personal: a phone, an ID number or a bank card."""
    n = len(digits)
    if n == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        return "phone"
    if n == 18 and _birth_ok(int(digits[6:10]), int(digits[10:12]), int(digits[12:14])):
        return "id"
    if n == 15 and digits.isdigit() and _birth_ok(1900 + int(digits[6:8]), int(digits[8:10]), int(digits[10:12])):
        return "id"
    if 16 <= n <= 19 and digits.isdigit() and not _ORDER_WORDS.search(before) and (
            _luhn(digits) or _CARD_WORDS.search(before)):
        return "card"
    return None


def _number_spans(view: str) -> list[tuple[int, int, str]]:
    spans = [(s.start, s.end, mask_id_number(s.value)) for s in find_id_numbers(view, strict=False)]
    spans += [(s.start, s.end, mask_phone(s.value)) for s in find_phones(view)]
    for m in _DIGIT_RUN.finditer(view):
        digits = re.sub(r"[^0-9Xx]", "", m.group(0)).upper()
        kind = _classify_run(digits, view[max(0, m.start() - 8):m.start()])
        if kind == "phone":
            spans.append((m.start(), m.end(), mask_phone(digits)))
        elif kind is not None:
            spans.append((m.start(), m.end(), mask_id_number(digits)))
    for m in _EMAIL.finditer(view):
        spans.append((m.start(), m.end(), m.group(0)[0] + "***@***"))
    for m in _PLATE.finditer(view):
        if any(c.isdigit() for c in m.group(3)):
            spans.append((m.start(), m.end(), m.group(1) + m.group(2) + "*" * len(m.group(3))))
    for m in _ROOM.finditer(view):
        group = 1 if m.group(1) else 2
        spans.append((m.start(group), m.end(group), "*" * (m.end(group) - m.start(group))))
    return spans


def _introduced_name(m: re.Match) -> str:
    surname, given = m.group(2), m.group(3)
    for i, ch in enumerate(given):
        if ch in _NAME_FILLER:
            given = given[:i]
            break
    if (not given or (surname + given)[:2] in _NOT_NAMES or given[-1] in "区县市镇村路街乡省"
            or given.startswith(_TITLES)):
        return m.group(0)
    return m.group(0)[:m.start(3) - m.start(0)] + "*" * len(given) + m.group(0)[m.start(3) - m.start(0) + len(given):]


def mask_pii(text: str) -> str:
    """Replace personal data (see the module's docstring); idempotent, and fast enough for every order and log line."""
    view = _numeric_view(text)
    chosen: list[tuple[int, int, str]] = []
    # Earliest first, the longest of those starting together (an ID number over the phone-like digits inside it).
    for start, end, replacement in sorted(_number_spans(view), key=lambda s: (s[0], s[0] - s[1])):
        if not chosen or start >= chosen[-1][1]:
            chosen.append((start, end, replacement))
    if chosen:
        parts, last = [], 0
        for start, end, replacement in chosen:
            parts += [text[last:start], replacement]
            last = end
        text = "".join(parts) + text[last:]
    text = _INTRODUCED.sub(_introduced_name, text)
    return _NAMED_CALLER.sub(lambda m: m.group(1) + m.group(2)[:1] + "*" * (len(m.group(2)) - 1 + len(m.group(3))), text)


class PIIMaskingFilter(logging.Filter):
    """Logging filter: no phone or ID number reaches a log line, whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Mask `logger`'s records and its handlers'. Without a logger, also every record of the process as it is
    made: a logger's filters never see its children's records, and handlers added later (uvicorn's, a service's
    basicConfig) would have none."""
    target = logger or logging.getLogger()
    if not any(isinstance(f, PIIMaskingFilter) for f in target.filters):
        target.addFilter(PIIMaskingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, PIIMaskingFilter) for f in handler.filters):
            handler.addFilter(PIIMaskingFilter())
    make_record = logging.getLogRecordFactory()
    if logger is None and not getattr(make_record, "masks_pii", False):
        def masked_record(*args, **kwargs) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            try:
                _FILTER.filter(record)
            except Exception:  # a bad format string: logging reports it when the record is emitted
                pass
            return record

        masked_record.masks_pii = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(masked_record)


_FILTER = PIIMaskingFilter()
