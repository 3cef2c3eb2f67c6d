"""nlp.tags: sensitive tags (扬言/信访/维稳/舆情), urgency with negation, 110/119/122 diversion, sentiment."""
from __future__ import annotations

import pytest

from nlp.normalize import normalize
from nlp.tags import analyse, sentiment_score


@pytest.mark.parametrize("text, tag, evidence", [
    ("再不给我解决，我就从楼上跳下去，不想活了！", "扬言", "不想活"),
    ("拖欠工资半年了，再不解决我就去北京上访", "信访", "上访"),
    ("我们几十个人明天去区政府门口拉横幅讨说法", "维稳", "拉横幅"),
    ("不处理我就发到抖音上曝光你们", "舆情", "抖音"),
])
def test_sensitive_tags(text, tag, evidence):
    signals = analyse(text)
    assert tag in signals.tags
    assert evidence in signals.tag_evidence[tag]


def test_threat_is_urgent_and_tagged():
    signals = analyse("我要从楼上跳下去，不想活了")
    assert signals.tags == ["扬言"]
    assert signals.tag_evidence["扬言"] == ["不想活"]
    assert signals.urgency == "紧急"


def test_ordinary_complaint_has_no_tags_and_is_not_urgent():
    signals = analyse("小区门口的路灯坏了好几天，晚上走路看不清")
    assert signals.tags == [] and signals.urgency == "非紧急" and signals.diversion is None


def test_several_tags_at_once():
    signals = analyse("工地拖欠我们工资，几十个人准备堵路，还要找电视台记者曝光，再不给钱就去省信访局")
    assert set(signals.tags) == {"维稳", "舆情", "信访"}


@pytest.mark.parametrize("text, cues, line", [
    ("楼道里有煤气味，好像漏气了，快来人", {"漏气", "煤气味"}, "119"),
    ("隔壁那栋楼着火了，冒好大的烟", {"着火"}, "119"),
    ("电梯困人了，我家老人关在里面半个小时了", {"电梯困人"}, "119"),
    ("路边的电线掉下来了还在打火花", {"电线掉"}, None),
    ("小区门口井盖被偷了，没有井盖很危险", {"井盖被偷", "没有井盖"}, None),
])
def test_urgent_cues_and_diversion(text, cues, line):
    signals = analyse(text)
    assert signals.urgency == "紧急"
    assert cues <= set(signals.urgent_cues)
    assert signals.diversion == line


@pytest.mark.parametrize("text, line", [
    ("两个人在小区门口打架，打得头破血流", "110"),
    ("有小偷正在偷电动车", "110"),
    ("路口两辆车追尾了，堵在那里", "122"),
    ("电动车撞人之后肇事逃逸了", "122"),
])
def test_police_and_traffic_diversion(text, line):
    assert analyse(text).diversion == line


def test_fire_first_when_fire_and_fight_are_both_mentioned():
    assert analyse("邻居吵架打架，有人把煤气罐打翻了，现在到处是煤气味").diversion == "119"


@pytest.mark.parametrize("text", [
    "没有着火，只是楼道里的灯坏了",
    "不是漏气，是下水道返臭味",
    "没着火，就是烧烤店油烟太大",
])
def test_negated_urgent_cue_is_not_urgent(text):
    signals = analyse(text)
    assert signals.urgency == "非紧急"
    assert signals.urgent_cues == []
    assert signals.diversion is None


def test_negation_only_cancels_the_negated_mention():
    signals = analyse("刚开始没有着火，后来真的着火了")
    assert signals.urgency == "紧急" and signals.diversion == "119"


@pytest.mark.parametrize("text", ["配电箱不断冒烟，电线都烧焦了", "燃气管道不停漏气，整个楼道都是味"])
def test_continuing_danger_is_not_a_negation(text):
    signals = analyse(text)
    assert signals.urgency == "紧急"
    assert signals.diversion == "119"


def test_traditional_script_works_after_normalisation():
    signals = analyse(normalize("樓道裡有煤氣味，好像漏氣了"))
    assert signals.urgency == "紧急" and signals.diversion == "119"


def test_sentiment_direction_and_range():
    angry = sentiment_score("气死了！！到底有没有人管！！投诉无门，天天吵得睡不着")
    grateful = sentiment_score("感谢你们及时处理，非常满意，给你们点赞")
    neutral = sentiment_score("请问社保卡在哪里补办")
    assert -1.0 <= angry < -0.5
    assert 0.3 < grateful <= 1.0
    assert neutral == 0.0


def test_generic_words_do_not_make_a_complaint_urgent():
    # "危险" and "马上" are how people talk about any nuisance, not a live emergency.
    signals = analyse("晚上好多摊贩占道摆摊，人都要走到马路上去，太危险了，请马上处理")
    assert signals.urgency == "非紧急" and signals.urgent_cues == []


def test_threat_to_go_to_city_hall_is_a_petition_tag():
    signals = analyse("再不处理我就去市政府门口拉横幅，还要发抖音曝光")
    assert {"信访", "维稳", "舆情"} <= set(signals.tags)
