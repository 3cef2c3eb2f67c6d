"""Reading citizens' letters (title, greetings, thanks) and the honest-confidence policy for them.

All texts are made up, shaped like real letters to a leaders' message board: a title sentence, a greeting to the
书记, a long story with a 小区 name, an angry tail and thanks.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hotline.cli import app
from hotline.core.config import get_settings
from nlp.letters import BODY_HEAD_CHARS, OTHER_MATTERS_MAX, matter_text, other_matter_texts, split_title, strip_courtesy
from routing import policy
from routing.calibration import same_kind_of_body
from routing.policy import CityPolicy, PlattScaling, fit_letter_calibration, is_letter, load_city_policy

STORY = ("我们小区是2012年交房的老小区，住了四百多户，楼顶有业主私自加建了两层玻璃房，还把楼道堵了一半，"
         "物业说管不了，社区来看过一次就没有下文了，下雨天楼下几家都漏水，老人小孩上下楼很不安全！！😡")
LETTER = ("反映岳麓区枫林绿洲小区楼顶违建问题。尊敬的胡书记：您好！" + STORY * 4
          + "恳请领导百忙之中关注一下，谢谢！")


def test_the_title_and_the_head_of_the_body_are_what_matching_reads():
    letter = split_title(LETTER)
    assert letter.title == "反映岳麓区枫林绿洲小区楼顶违建问题"
    assert not letter.body.startswith("尊敬的") and "您好" not in letter.body[:10]
    assert not letter.body.endswith("谢谢！")
    text = matter_text(LETTER)
    assert text.startswith(letter.title + "。我们小区是2012年交房的老小区")
    assert len(text) <= len(letter.title) + 1 + BODY_HEAD_CHARS
    assert "恳请领导" not in text


def test_a_short_record_has_no_title_and_is_kept_whole():
    record = "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，油烟很大。"
    assert split_title(record).title == ""
    assert matter_text(record) == record


def test_a_letter_of_greetings_only_never_becomes_empty():
    assert matter_text("尊敬的市长：您好！") != ""
    assert matter_text("谢谢") == "谢谢"


@pytest.mark.parametrize("greeting", ["尊敬的易书记：您好！", "敬爱的市长，", "张县长好，", "您好！", "领导们好："])
def test_greetings_are_stripped_at_the_start(greeting):
    assert strip_courtesy(greeting + "小区门口的路灯坏了三个月") == "小区门口的路灯坏了三个月"


def test_courtesy_never_takes_a_matter_word():
    assert strip_courtesy("感谢信：表扬高桥街道城管队员") .startswith("感谢信")
    assert strip_courtesy("书记门口的路灯不亮") == "书记门口的路灯不亮"


def test_letters_are_told_from_records():
    assert is_letter(LETTER)
    assert is_letter("投诉某某小区物业乱收费。" + "物业每个月多收我们二十块钱的垃圾费，还不给发票。" * 5)
    assert not is_letter("家里突然停水了也没有提前通知")


def test_a_letters_confidence_follows_the_letter_calibration_and_never_exceeds_the_record_one():
    scaling = PlattScaling(slope=0.14, intercept=0.04)
    city = CityPolicy(scaling)
    assert city.confidence("家里停水了", 0.99, 0.99, 1.0) == 0.99                 # a record keeps its calibration
    letter_conf = city.confidence(LETTER, 0.99, 0.99, 1.0)
    assert letter_conf == pytest.approx(scaling(0.99, 1.0)) and letter_conf < 0.95   # a letter is recalibrated
    assert city.confidence(LETTER, 0.10, 0.99, 1.0) == 0.10                        # never above the record one
    assert CityPolicy().confidence(LETTER, 0.99, 0.99, 1.0) == 0.99                # no policy: unchanged


def test_the_policy_file_round_trips(tmp_path):
    CityPolicy(PlattScaling(0.5, -1.25, "300 labelled letters", 300, "2026-12-06")).save(tmp_path / "policy.yaml")
    loaded = load_city_policy(tmp_path)
    assert loaded.letter_calibration == PlattScaling(0.5, -1.25, "300 labelled letters", 300, "2026-12-06")
    assert load_city_policy(tmp_path / "nowhere").letter_calibration is None


def test_calibration_refuses_outcomes_that_cannot_support_it():
    with pytest.raises(ValueError, match="too few"):
        fit_letter_calibration([0.9] * 10, [1.0] * 10, [1] * 10, source="t")
    with pytest.raises(ValueError, match="all one way"):
        fit_letter_calibration([0.9] * 40, [1.0] * 40, [1] * 40, source="t")


def test_a_confident_letter_calibration_grows_with_the_matter_probability():
    probs = [0.2, 0.4, 0.6, 0.8, 0.95] * 20
    correct = [0, 0, 1, 1, 1] * 20
    scaling = fit_letter_calibration(probs, [1.0] * len(probs), correct, source="made up")
    assert scaling.slope > 0 and scaling(0.95, 1.0) > scaling(0.2, 1.0)
    assert scaling.rows == 100


@pytest.mark.parametrize("label,name,right", [
    ("街道办事处", "洪桥镇人民政府", True),                 # 街道/镇/乡 are one territorial kind
    ("镇人民政府", "岳麓区事发地街道办事处（乡镇人民政府，待核实）", True),
    ("住房和城乡建设局", "岳麓区住房和城乡建设局", True),    # 城乡 is not a township
    ("教育局", "长沙市人力资源和社会保障局", False),
    ("教育局", None, False),
])
def test_a_kind_of_body_label_matches_the_routed_unit(label, name, right):
    assert same_kind_of_body(label, name) is right


def test_the_router_reports_the_letter_calibration(router):
    router.city_policy = CityPolicy(PlattScaling(0.14, 0.04))
    record = router.route("岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤")
    letter = router.route("反映岳麓区望月湖街道摊贩占道问题。尊敬的书记：您好！" + "每天晚上好多摊贩占道摆摊卖烧烤，"
                          "油烟熏得我们开不了窗，城管来了就跑，走了又来，已经快一年了。" * 3 + "谢谢！")
    assert letter["confidence"] < policy.PlattScaling(0.14, 0.04)(1.0, 1.0) + 1e-9
    assert letter["decision"] != "auto"
    assert record["department"] == letter["department"]


def test_hotline_calibrate_writes_the_city_policy(monkeypatch, tmp_path):
    from support import write_tiny_city

    data_root = tmp_path / "data"
    city = write_tiny_city(data_root / "changsha")
    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(data_root))
    monkeypatch.setenv("HOTLINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOTLINE_EMBEDDER", "tfidf")
    monkeypatch.setenv("HOTLINE_CITY", "changsha")
    get_settings.cache_clear()
    head = "。尊敬的领导：您好！我家住在{place}，" + "这个问题已经反映了好几次，一直没有人来处理，大家都很有意见，" * 3 + "谢谢！"
    rows = []
    for i in range(30):
        rows.append({"text": "反映望月湖街道摊贩占道经营问题" + head.format(place="岳麓区望月湖街道") + f"（第{i}次）",
                     "department": "城市管理和综合执法局"})
        rows.append({"text": "反映高桥街道楼上邻居半夜吵闹问题" + head.format(place="雨花区高桥街道") + f"（第{i}次）",
                     "department": "生态环境局" if i % 3 else "街道办事处"})
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, ["calibrate", "--history", str(history), "--match", "kind"])
        assert result.exit_code == 0, result.output
        assert "would be dispatched automatically at 0.95" in result.output   # what the calibration does to auto
        saved = load_city_policy(city).letter_calibration
        assert saved is not None and saved.rows == 60
        bad = CliRunner().invoke(app, ["calibrate", "--history", str(history), "--match", "department"])
        assert bad.exit_code != 0 and "--match must be unit or kind" in bad.output
    finally:
        get_settings.cache_clear()


def test_the_largest_share_that_auto_could_take_is_read_from_the_most_confident_down():
    from routing.evaluate import largest_share_at

    confidence = [0.1 * (i % 10) + 0.01 * i for i in range(20)]     # not in order
    by_rank = sorted(range(20), key=lambda i: -confidence[i])
    correct = [0] * 20
    for i in by_rank[:12]:
        correct[i] = 1                                              # the 12 most confident are right
    assert largest_share_at(confidence, correct, 0.95) == 0.6
    assert largest_share_at(confidence, correct, 0.6) == 1.0        # 12 of 20 right overall
    correct[by_rank[3]] = 0                                         # one wrong among the first ten
    assert largest_share_at(confidence, correct, 0.95) == 0.0       # 0.9 at ten, less after: nothing to dispatch
    assert largest_share_at(confidence[:5], correct[:5], 0.5) == 0.0   # fewer than ten orders tell nothing
    # equal confidences cannot be split by a threshold: 12 right then 8 wrong, all said 0.8, is 0.6 right
    assert largest_share_at([0.8] * 20, [1] * 12 + [0] * 8, 0.95) == 0.0
    assert largest_share_at([0.9] * 12 + [0.8] * 8, [1] * 12 + [0] * 8, 0.95) == 0.6


def test_calibrating_letters_reports_what_auto_does_with_the_new_calibration(router):
    from routing.calibration import calibrate_letters
    from routing.history import LabelledRecord

    stalls = ("反映岳麓区望月湖街道摊贩占道问题。尊敬的书记：您好！" + "每天晚上好多摊贩占道摆摊卖烧烤，"
              "油烟熏得我们开不了窗，城管来了就跑，走了又来，已经快一年了。" * 3 + "谢谢！（第{}封）")
    water = ("反映雨花区高桥街道停水问题。领导您好！" + "我们小区这个月已经停了三次水，也没有提前通知，"
             "家里老人小孩做饭洗澡都成问题，打电话也没人接😡" * 3 + "恳请关注！（第{}封）")
    owner_of_stalls = router.route(stalls.format(0))["department"]["code"]
    owner_of_water = router.route(water.format(0))["department"]["code"]
    records = [LabelledRecord(i, stalls.format(i), department=owner_of_stalls) for i in range(1, 31)]
    records += [LabelledRecord(100 + i, water.format(i), department=owner_of_water if i % 2 else "CS-HOTLINE")
                for i in range(30)]
    before = router.city_policy
    # a threshold these made-up letters can reach, so that some are dispatched and the count means something
    router.settings = router.settings.model_copy(update={"auto_threshold": 0.7})
    fitted = calibrate_letters(router, records)
    assert router.city_policy is before                    # the router is left as it was
    assert fitted.letters == 60 and fitted.threshold == 0.7 and 0 < fitted.auto_right < fitted.auto <= 60
    # the figures are the router's own decisions under the new calibration
    router.city_policy = CityPolicy(fitted.scaling)
    routed = [router.route(r.text) for r in records]
    auto = [r for r, out in zip(records, routed) if out["decision"] == "auto"]
    assert fitted.auto == len(auto)
    assert fitted.auto_right == sum(out["department"]["code"] == r.department
                                    for r, out in zip(records, routed) if out["decision"] == "auto")
    assert f"{fitted.auto} of 60 letters would be dispatched automatically at 0.7" in fitted.summary()


def test_a_letter_of_praise_keeps_its_thanks():
    praise = "表扬一下咸嘉湖街道的刘书记，帮我们老小区加装电梯的事跑前跑后，感谢🙏"
    assert strip_courtesy(praise) == praise
    assert strip_courtesy("楼下的路灯终于修好了，谢谢！") == "楼下的路灯终于修好了，"


def test_the_record_calibration_leaves_out_unlisted_territorial_offices(router):
    import copy

    from routing.calibration import calibrate_router
    from routing.history import LabelledRecord

    router.matcher = copy.copy(router.matcher)             # the matcher is shared between tests: calibrate a copy
    router.matcher.model = copy.deepcopy(router.matcher.model)
    router.matcher.index_dirs = []                          # … and never write it next to the shared index
    listed = "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去"
    unlisted = "岳麓区楼上邻居每天半夜跺脚拖椅子，吵得睡不着"      # a street matter, street unknown
    assert router.route(unlisted)["department"]["listed"] is False
    owner = router.route(listed)["department"]["code"]
    records = [LabelledRecord(i, listed, department=owner if i % 4 else "430104-GONGAN") for i in range(1, 31)]
    records += [LabelledRecord(100 + i, unlisted, department="430104001") for i in range(10)]
    result = calibrate_router(router, records)
    assert result["rows"] == 30                               # the 10 unlisted ones were not judged against a code


MULTI_ISSUE = ("反映岳麓区望月湖小区的几个问题。尊敬的书记：您好！我是望月湖小区的老住户，有几件事一直没人管。"
               "一是小区门口晚上好多摊贩占道摆摊卖烧烤，人行道都过不去，城管来了就跑。"
               "二是旁边工地每天半夜还在打桩施工，噪音吵得全楼的人都睡不着😡😡"
               "另外，小区这个月已经停水三次了，也没有提前通知，家里做不了饭。恳请领导关注，谢谢！")


def test_a_multi_issue_letter_is_cut_at_its_turns_to_other_matters():
    parts = other_matter_texts(MULTI_ISSUE)
    assert len(parts) == OTHER_MATTERS_MAX
    assert parts[0].startswith("旁边工地每天半夜还在打桩施工") and "另外" not in parts[0]
    assert parts[1].startswith("小区这个月已经停水三次了")
    # a cue word inside a sentence, an amount or a date is not a turn
    assert other_matter_texts("家门口另外一栋楼的空调外机滴水，物业费每平米涨了3.5元，2、3月份都没有公示") == []
    assert other_matter_texts("") == []


def test_the_router_offers_a_letters_other_matters_and_never_dispatches_them_alone(router):
    routed = router.route(MULTI_ISSUE)
    assert routed["kb_item"]["id"] == "KB-01-001"
    others = {m["kb_item"]["id"]: m for m in routed["other_matters"]}
    assert set(others) == {"KB-03-001", "KB-10-001"}, routed["other_matters"]
    assert others["KB-10-001"]["department"]["code"] == "CS-WATER"
    assert all(m["probability"] >= policy.OTHER_MATTER_MIN_PROBABILITY for m in others.values())
    assert routed["decision"] != "auto"
    # one matter, told in a long letter without turns: nothing else is offered
    single = router.route("反映望月湖街道摊贩占道问题。尊敬的书记：您好！" + "每天晚上好多摊贩占道摆摊卖烧烤，"
                          "人行道都过不去，城管来了就跑，走了又来。" * 3 + "谢谢！")
    assert single["other_matters"] == []
