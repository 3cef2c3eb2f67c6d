"""nlp.entities (phones, ID numbers, order numbers, times, addresses, subjects) and nlp.pii masking."""
from __future__ import annotations

import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlp.entities import (
    extract_entities,
    find_address_spans,
    find_id_numbers,
    find_order_numbers,
    find_phones,
    find_subjects,
    find_times,
    valid_id_number,
)
from nlp.pii import PIIMaskingFilter, install_log_masking, mask_id_number, mask_phone, mask_pii

GB11643_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
GB11643_CHECK = "10X98765432"


def with_check_digit(first17: str) -> str:
    """Append the GB 11643 check digit, computed here independently of the code under test."""
    assert len(first17) == 17 and first17.isdigit()
    total = sum(int(d) * w for d, w in zip(first17, GB11643_WEIGHTS))
    return first17 + GB11643_CHECK[total % 11]


VALID_ID = with_check_digit("43010419900307123")          # 长沙岳麓区, born 1990-03-07
VALID_ID_X = "11010519491231002X"                          # the standard's own example, check digit X
INVALID_ID = VALID_ID[:-1] + ("0" if VALID_ID[-1] != "0" else "1")
MOBILE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def test_computed_check_digit_is_right():
    assert VALID_ID == "430104199003071237"
    assert with_check_digit("11010519491231002") == VALID_ID_X


# ---------------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize("written, digits", [
    ("138 1234 5678", "13812345678"),
    ("+86-13912345678", "13912345678"),
    ("+86 139 1234 5678", "13912345678"),
    ("13712345678", "13712345678"),
    ("159-8765-4321", "15987654321"),
])
def test_mobile_numbers_in_the_ways_agents_write_them(written, digits):
    text = f"来电人称楼下噪音扰民，联系电话{written}，请回电。"
    phones = find_phones(text)
    assert [(p.kind, p.value) for p in phones] == [("phone", digits)]
    assert text[phones[0].start:phones[0].end] == written


def test_landline_with_area_code():
    phones = find_phones("座机：0731-88886666，白天打")
    assert [(p.kind, p.value, p.text) for p in phones] == [("landline", "073188886666", "0731-88886666")]


def test_digit_runs_that_are_not_phones():
    assert find_phones("拨打12345反映，工单尾号5678") == []
    assert find_phones("账号138123456789012") == []   # 15 digits: not a mobile number
    # A mobile-like run inside an ID number is part of the ID, not a phone.
    assert find_phones(f"身份证{VALID_ID}") == []


# ------------------------------------------------------------------------------------------ ID numbers


def test_valid_id_number_checks_the_gb11643_digit():
    assert valid_id_number(VALID_ID)
    assert valid_id_number(VALID_ID_X) and valid_id_number(VALID_ID_X.lower())
    assert not valid_id_number(INVALID_ID)
    assert not valid_id_number(VALID_ID[:-1])  # 17 digits


def test_find_id_numbers_strict_and_loose():
    text = f"我的身份证号是{VALID_ID}，我老婆的是{INVALID_ID}，户主{VALID_ID_X.lower()}"
    strict = find_id_numbers(text)
    assert [s.value for s in strict] == [VALID_ID, VALID_ID_X]  # upper-cased X
    loose = find_id_numbers(text, strict=False)
    assert [s.value for s in loose] == [VALID_ID, INVALID_ID, VALID_ID_X]


def test_loose_id_needs_a_plausible_birth_date():
    not_a_date = "430104" + "19991350" + "1234"  # month 13
    assert find_id_numbers(f"编号{not_a_date}", strict=False) == []


# --------------------------------------------------------------------------------- order numbers, times


@pytest.mark.parametrize("text, expected", [
    ("工单号GD2024051200123，上次反映过", ["GD2024051200123"]),
    ("受理编号：HL202405120001，麻烦查一下进度", ["HL202405120001"]),
    ("单号为CS20240512123456", ["CS20240512123456"]),
    ("之前那个GD2024051299887还没回复", ["GD2024051299887"]),
    ("工单号：gd2024051299887", ["GD2024051299887"]),          # upper-cased
    ("订单号是13812345678", []),          # a phone after 单号 is not an order number
])
def test_order_numbers(text, expected):
    assert [s.value for s in find_order_numbers(text)] == expected


def test_order_number_that_is_an_id_number_is_not_an_order_number():
    assert find_order_numbers(f"受理编号：{VALID_ID}") == []


@pytest.mark.parametrize("text, expected", [
    ("2024年5月6日晚上10点开始施工", ["2024年5月6日晚上10点"]),
    ("昨晚11点半还在吵", ["昨晚11点半"]),
    ("凌晨3点还在施工", ["凌晨3点"]),
    ("2024-05-06 23:30开始停水", ["2024-05-06 23:30"]),
    ("上周五晚上10点半", ["上周五晚上10点半"]),
    ("从5月6号开始，每天23:30以后", ["5月6号", "23:30"]),
])
def test_times(text, expected):
    assert [s.value for s in find_times(text)] == expected


def test_address_span_and_subject():
    text = "岳麓区望月湖街道桃子湖路12号楼下那家湘味烧烤店油烟太大"
    assert [s.text for s in find_address_spans(text)] == ["岳麓区望月湖街道桃子湖路12号楼"]
    assert [s.value for s in find_subjects(text)] == ["湘味烧烤店"]
    assert [s.value for s in find_subjects("隔壁的长沙某某建筑工程有限公司工地半夜施工")] == ["长沙某某建筑工程有限公司"]


def test_extract_entities_on_a_full_order():
    text = (f"来电人张三丰，联系电话138 1234 5678，备用+86-13912345678，座机0731-88886666，身份证号{VALID_ID_X}，"
            "工单号：GD2024051200123，2024年5月6日晚上10点开始，昨晚11点半还在吵，"
            "岳麓区望月湖街道桃子湖路12号楼下那家湘味烧烤店油烟太大")
    entities = extract_entities(text)
    values = {k: [s["value"] for s in v] for k, v in entities.items()}
    assert values == {
        "phones": ["13812345678", "13912345678", "073188886666"],
        "id_numbers": [VALID_ID_X],
        "order_numbers": ["GD2024051200123"],
        "times": ["2024年5月6日晚上10点", "昨晚11点半"],
        "addresses": ["岳麓区望月湖街道桃子湖路12号楼"],
        "subjects": ["湘味烧烤店"],
    }


# ---------------------------------------------------------------------------------------------- masking


def test_mask_helpers():
    assert mask_phone("138 1234 5678") == "138****5678"
    assert mask_id_number(VALID_ID) == "4301**********1237"


def test_mask_pii_leaves_no_full_phone_or_id():
    text = (f"来电人张三丰，联系电话138 1234 5678，备用+86-13912345678，座机0731-88886666，"
            f"身份证号{VALID_ID}，家属身份证{INVALID_ID}，工单号GD2024051200123")
    masked = mask_pii(text)
    for secret in ("13812345678", "1234 5678", "13912345678", "88886666", VALID_ID, INVALID_ID, "三丰"):
        assert secret not in masked
    assert "138****5678" in masked and "139****5678" in masked and "073****6666" in masked
    assert "4301**********1237" in masked
    assert "来电人张**" in masked
    assert "GD2024051200123" in masked  # order numbers are not personal data
    assert not MOBILE_RE.search(masked)


@pytest.mark.parametrize("text, masked", [
    ("联系人：李四，电话13800001111", "联系人：李*，电话138****1111"),
    ("投诉人王小明先生称楼下噪音", "投诉人王**先生称楼下噪音"),
])
def test_mask_pii_names_in_caller_fields(text, masked):
    assert mask_pii(text) == masked


def test_mask_pii_keeps_a_text_without_personal_data():
    text = "楼下烧烤店油烟太大，晚上10点还在营业，工单号GD2024051200123😡"
    assert mask_pii(text) == text


@pytest.mark.parametrize("written", ["0731 8888 6666", "0731-8888-6666"])
def test_mask_pii_masks_a_grouped_landline(written):
    masked = mask_pii(f"座机{written}，白天打")
    assert "8888 6666" not in masked and "8888-6666" not in masked


def test_pii_masking_filter_masks_a_log_record(caplog):
    logger = logging.getLogger("hotline.test.pii")
    logger.addFilter(PIIMaskingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="hotline.test.pii"):
            logger.info("routing order %s from %s, ID %s", "GD2024051200123", "138 1234 5678", VALID_ID)
    finally:
        logger.filters.clear()
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message == "routing order GD2024051200123 from 138****5678, ID 4301**********1237"
    assert "13812345678" not in caplog.text and "1234 5678" not in caplog.text and VALID_ID not in caplog.text


def test_install_log_masking_is_idempotent_and_covers_handlers():
    logger = logging.getLogger("hotline.test.install")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        install_log_masking(logger)
        install_log_masking(logger)
        assert sum(isinstance(f, PIIMaskingFilter) for f in logger.filters) == 1
        assert sum(isinstance(f, PIIMaskingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
        logger.filters.clear()


# ------------------------------------------------------------------------------------------- properties

_separator = st.sampled_from(["", " ", "-"])


@st.composite
def embedded_mobile(draw):
    head = draw(st.sampled_from("3456789"))
    digits = "1" + head + draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
    sep1, sep2 = draw(_separator), draw(_separator)
    written = digits[:3] + sep1 + digits[3:7] + sep2 + digits[7:]
    prefix = draw(st.sampled_from(["", "+86", "+86-", "86 "]))
    return digits, prefix + written


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.text(max_size=30), phone=embedded_mobile(), after=st.text(max_size=30))
def test_mask_pii_never_leaves_an_11_digit_mobile(before, phone, after):
    digits, written = phone
    # The number stands on its own (no digit glued to it), as in any real complaint.
    if before and before[-1].isdigit() or after and after[0].isdigit():
        before, after = before + "，", "，" + after
    masked = mask_pii(before + written + after)
    assert not MOBILE_RE.search(masked), masked
    assert digits not in re.sub(r"[\s\-]", "", masked)


# ------------------------------------------------------------------------- review: PII inside other spans


@pytest.mark.parametrize("text, secret", [
    ("我电话是13812345678我住在望月湖社区3栋楼上邻居半夜跺脚", "12345678"),      # ASR: no punctuation
    (f"身份证{INVALID_ID}住望月湖社区3栋楼上邻居半夜跺脚", INVALID_ID[6:]),       # mistyped ID: still personal
    ("13812345678湘味烧烤店油烟太大", "12345678"),
])
def test_address_and_subject_spans_never_swallow_a_phone_or_id_number(text, secret):
    spans = find_address_spans(text) + find_subjects(text)
    assert spans, "the address or subject itself is still found"
    for span in spans:
        assert secret not in span.text and not re.search(r"\d{4}", span.text), span
        assert text[span.start:span.end] == span.text


@pytest.mark.parametrize("written", ["138－1234－5678", "138—1234—5678", "0731－88886666"])
def test_phone_written_with_full_width_or_long_dashes_is_masked(written):
    masked = mask_pii(f"联系电话{written}，晚上打")
    assert not re.search(r"\d{4}[－—]\d{4}|\d{8}", masked), masked
    assert len(find_phones(f"联系电话{written}")) == 1


def test_log_masking_covers_loggers_and_handlers_that_come_later():
    # The API installs masking at start-up, when the root logger has no handler yet (uvicorn configures only its
    # own loggers); a record of a named logger never passes the root logger's own filters.
    import io

    factory, root_filters = logging.getLogRecordFactory(), list(logging.getLogger().filters)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("hotline.test.later")
    try:
        install_log_masking()
        logger.addHandler(handler)
        logger.warning("caller %s, ID %s", "138 1234 5678", VALID_ID)
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(factory)
        logging.getLogger().filters[:] = root_filters
    assert stream.getvalue() == "caller 138****5678, ID 4301**********1237\n"


# ------------------------------------------------------------- review 2026-12-06 M4: forms masking missed


@pytest.mark.parametrize("text, secrets, kept", [
    ("我叫李建国，住在12栋3单元502室，楼上天天漏水", ["建国", "502"], ["我叫李**", "12栋3单元***室"]),
    ("本人王芳，小区3栋2单元501室楼上噪音", ["王芳", "501"], ["本人王*", "3栋2单元***室"]),
    ("我是张伟，家住芙蓉区，电话在下面", ["张伟"], ["我是张*"]),
    ("岳麓区望月湖街道路灯坏了，电话１３８１２３４５６８２，请回电", ["１３８１２３４５６８２", "12345682"], ["138****5682"]),
    ("联系电话幺三八一二三四五六八三，白天打", ["幺三八一二三四五六八三"], ["138****5683"]),
    ("手机一三八 零零一三 八零零零", ["一三八 零零一三 八零零零"], ["138****8000"]),
    ("手机1380 0138 000有人接", ["1380 0138 000"], ["138****8000"]),
    ("身份证 430104 19900101 1235，户籍在岳麓区", ["430104 19900101 1235", "19900101"], ["4301**********1235"]),
    ("老身份证430104900101123还没换", ["430104900101123"], ["4301*******1123"]),
    ("银行卡6222021234567890123被冻结了", ["6222021234567890123"], ["6222***********0123"]),
    ("邮箱wangxm@163.com，回复发这里", ["wangxm", "163.com"], ["w***@***"]),
    ("湘A12345这辆车天天占消防通道，还有湘A·D12345", ["12345"], ["湘A*****", "湘A·******"]),
])
def test_mask_pii_covers_the_forms_the_review_found(text, secrets, kept):
    masked = mask_pii(text)
    for secret in secrets:
        assert secret not in masked, masked
    for part in kept:
        assert part in masked, masked
    assert mask_pii(masked) == masked          # idempotent: masking stored masked text again changes nothing


@pytest.mark.parametrize("text", [
    "2026年12月6日下午3点，岳麓区麓山南路932号门口的烧烤店占道经营，交了1500元押金也不退",
    "工单号CS20261106000002反映过，12345热线说7个工作日内答复，已经过了10天",
    "我是周边居民，我是岳麓区的业主，我是党员，本人于今日再次投诉，我是王师傅的邻居",
    "小区3栋的电梯坏了三天，物业不管，房租每月1500元，2栋楼下停了20多辆电动车",
    "雨花区韶山中路419号，湘江边，2026-12-06 23:30还在施工，噪音超过70分贝",
    "一二三四五六，长沙市开福区芙蓉中路一段100号，订单号202612060000012345",
])
def test_mask_pii_leaves_ordinary_complaint_text_alone(text):
    assert mask_pii(text) == text


def test_mask_pii_on_a_long_letter_is_idempotent():
    # Speed is a benchmark matter (BENCHMARKS.md), never a timed assertion here.
    text = ("岳麓区望月湖街道桃子湖路晚上好多摊贩占道摆摊卖烧烤，人行道都过不去！！2026年12月6日晚上10点还在营业，"
            "联系人：李四，电话13812345678，我叫李建国，住3栋2单元501室") * 3
    once = mask_pii(text)
    assert "13812345678" not in once and "李建国" not in once and "501室" not in once
    assert mask_pii(once) == once and "2026年12月6日" in once
