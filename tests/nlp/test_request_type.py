"""诉求类型 from made-up messages shaped like real ones (title first, long, angry, closing courtesies)."""
from __future__ import annotations

import pytest

from nlp.request_type import request_type, request_types


@pytest.mark.parametrize("text, expected", [
    ("咨询长沙市医保异地报销政策。我妈在重庆住院骨折了，回长沙做手术不方便，异地报销要带哪些材料？谢谢！", "咨询"),
    ("请问公积金贷款怎么办理？需要什么材料", "咨询"),
    ("举报望城区某诊所无证行医。该诊所长期挂床，套取医保资金，希望严查！！", "举报"),
    ("我家楼下有人非法经营网吧，未成年人天天进出", "举报"),
    ("希望加快推进浏阳市S105公路拓宽建设。这条路是北乡通往城区的唯一通道，每天堵车。", "建议"),
    ("关于长沙市公交管理的建议。一是司机工作区域易被干扰，二是报站不清楚。", "建议"),
    ("表扬雨花区环卫工人。大雪天凌晨就在清扫，感谢他们！", "表扬"),
    ("求助：母亲瘫痪在床，家里走投无路，能否申请救助？", "求助"),
    # Complaints: a closing 建议/感谢 or "希望尽快处理" does not change what the message is.
    ("岳麓区含浦街道马路卫生很差。洒水车把泥巴冲来冲去，居民民愤极大！建议加强管理，谢谢领导", "投诉"),
    ("小区停水三天了没人管！！！😡希望尽快处理", "投诉"),
    ("表扬个鬼，物业太差了，投诉多次没人管", "投诉"),
    ("Wi-Fi坏了，ＡＰＰ也登不上，天心区营业厅不作为", "投诉"),
    ("", "投诉"),
    ("岳麓区望月湖小区楼道灯不亮。" + "已经一个多月了，" * 400, "投诉"),
])
def test_the_type_is_read_from_the_title_first(text, expected):
    assert request_type(text) == expected


def test_every_type_is_listed_with_the_default_last():
    assert request_types() == ("举报", "咨询", "求助", "建议", "表扬", "投诉")
