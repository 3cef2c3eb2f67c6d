"""nlp.normalize: input checks (empty, binary, too long) and canonical text for matching."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlp.normalize import DEFAULT_MAX_CHARS, InputError, check_text, clean_for_matching, normalize, strip_boilerplate

# ------------------------------------------------------------------------------------------- check_text


def test_check_text_returns_a_real_complaint_unchanged():
    text = "岳麓区望月湖街道桃子湖路晚上好多摊贩占道摆摊卖烧烤，人都过不去！😡"
    assert check_text(text) == text


@pytest.mark.parametrize("text", ["", " ", "   \t  ", "\n\n", "\u3000\u3000", " \r\n \u00a0 "])
def test_empty_or_whitespace_only_is_refused(text):
    with pytest.raises(InputError, match="empty"):
        check_text(text)


def test_missing_text_and_wrong_type_are_refused():
    with pytest.raises(InputError, match="missing"):
        check_text(None)
    with pytest.raises(InputError, match="must be a string, got int"):
        check_text(12345)
    with pytest.raises(InputError, match="got list"):
        check_text(["投诉"])


def test_very_long_text_names_the_limit():
    text = "楼下烧烤店油烟太大，" * 5_000  # 50,000 characters
    assert len(text) == 50_000
    with pytest.raises(InputError) as info:
        check_text(text)
    message = str(info.value)
    assert "50000" in message and str(DEFAULT_MAX_CHARS) in message and "limit" in message


def test_limit_is_configurable_and_inclusive():
    assert check_text("一" * 100, max_chars=100) == "一" * 100
    with pytest.raises(InputError, match="the limit is 99"):
        check_text("一" * 100, max_chars=99)


def test_bytes_utf8_are_decoded():
    assert check_text("楼下噪音扰民".encode()) == "楼下噪音扰民"


def test_bytes_with_nul_are_binary():
    with pytest.raises(InputError, match="binary"):
        check_text(b"\x00\x01PK\x03\x04\x00\x00\x00\x08\x00")


def test_invalid_utf8_bytes_are_binary():
    with pytest.raises(InputError, match="not UTF-8"):
        check_text(b"\xff\xfe\xfa\x80\x81 complaint")
    # GBK-encoded Chinese is not UTF-8 either: the message must say so rather than route mojibake.
    with pytest.raises(InputError, match="not UTF-8"):
        check_text("楼下烧烤店油烟太大".encode("gbk"))


def test_nul_inside_a_str_is_binary():
    with pytest.raises(InputError, match="NUL"):
        check_text("楼下\x00烧烤店")


def test_many_replacement_characters_are_binary():
    with pytest.raises(InputError, match="undecodable"):
        check_text("\ufffd" * 10 + "abc")


def test_many_control_characters_are_binary():
    with pytest.raises(InputError, match="control characters"):
        check_text("\x01\x02\x03\x04\x05\x06\x07\x08 油烟")


# ------------------------------------------------------------------------------------------- normalize


def test_traditional_characters_become_simplified():
    assert normalize("樓下燒烤店油煙太大，晚上十點還在營業！") == "楼下烧烤店油烟太大，晚上十点还在营业！"


def test_full_width_letters_and_digits_become_half_width_but_chinese_punctuation_stays():
    assert normalize("ＡＢＣ１２３　全角字母，３号楼！") == "ABC123 全角字母，3号楼！"


def test_emoji_and_mixed_english_survive():
    assert normalize("我的iPhone 15在Starbucks被偷了😭😭") == "我的iPhone 15在Starbucks被偷了😭😭"


def test_invisible_marks_and_controls_are_removed():
    assert normalize("零宽\u200b空格\u200d和\ufeffBOM\x07") == "零宽空格和BOM"


def test_spaces_and_newlines_are_tidied():
    assert normalize("  \u3000制表\t\t换行\n\n\n回车\r\n混合 \u00a0 ") == "制表 换行\n回车\n混合"


def test_asr_text_without_punctuation_is_kept_whole():
    asr = "喂你好我要投诉一下就是我们小区楼下那个烧烤店油烟好大晚上十点多还在营业麻烦你们派人来看一下"
    assert normalize(asr) == asr
    assert clean_for_matching(asr) == asr


def test_boilerplate_is_stripped_from_work_order_text():
    order = "工单编号：GD20240512001 来电人反映：楼下烧烤店油烟太大。请相关部门尽快核实处理。谢谢！"
    cleaned = clean_for_matching(order)
    assert "GD20240512001" not in cleaned and "来电人" not in cleaned and "核实处理" not in cleaned
    assert cleaned.startswith("楼下烧烤店油烟太大")


def test_boilerplate_never_strips_to_nothing():
    # An agent who typed only the template keeps the template rather than an empty text.
    assert strip_boilerplate("谢谢！") == "谢谢！"


def test_normalize_is_idempotent_on_a_messy_complaint():
    messy = "樓下ＫＴＶ噪音\u200b擾民！！　已經投訴３次了😡"
    once = normalize(messy)
    assert once == "楼下KTV噪音扰民！！ 已经投诉3次了😡"
    assert normalize(once) == once


# ------------------------------------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.binary(), st.text(alphabet=st.characters(max_codepoint=0x1F)),
                 st.text(alphabet="樓下燒烤\u200b\ufeff\ufffd\x00 \t\n，。！😡ＡＢ１２")))
def test_check_text_and_normalize_only_ever_raise_input_error(value):
    try:
        text = check_text(value)
    except InputError:
        return
    assert isinstance(text, str)
    out = normalize(text)
    assert isinstance(out, str)
    assert "\x00" not in out and "\u200b" not in out
    assert isinstance(clean_for_matching(text), str)


def test_lone_surrogates_become_replacement_characters():
    # Half an emoji (a client truncated the text) is not text a tokenizer or UTF-8 encoder accepts.
    assert check_text("楼上噪音\ud83d") == "楼上噪音\ufffd"
    assert normalize(check_text("楼上噪音\ud83d\ude21")).encode("utf-8")
    with pytest.raises(InputError, match="undecodable"):
        check_text("\ud800" * 10 + "abc")
