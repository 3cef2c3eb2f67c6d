"""The acceptance scoring rule for real messages, as a library: the KIND of the answering body, with 街道/镇/乡 as
one territorial kind. It mirrors ../shared/eval/score_kind.py (which is a script, not importable); the benchmark
runs that script too when it is present and reports both, so a drift between the two shows at once."""
from __future__ import annotations

import re

KINDS = [("街道办事处", ["街道"]), ("镇人民政府", ["镇"]), ("乡人民政府", ["乡"]),
         ("公安局交警大队", ["交警", "交通警察"]), ("派出所", ["派出所"]), ("教育局", ["教育"]),
         ("交通运输局", ["交通运输"]), ("人力资源和社会保障局", ["人力资源", "人社"]),
         ("城市管理和行政执法局", ["城市管理", "城管", "综合执法", "行政执法"]), ("住房和城乡建设局", ["住房和城乡建设", "住建"]),
         ("自然资源和规划局", ["自然资源", "规划"]), ("发展和改革委员会", ["发展和改革", "发改"]), ("生态环境局", ["生态环境", "环保"]),
         ("住房公积金管理中心", ["公积金"]), ("房产局", ["房产", "住房保障", "住房"]), ("医疗保障局", ["医疗保障", "医保"]),
         ("民政局", ["民政"]), ("财政局", ["财政"]), ("公安局", ["公安"]), ("不动产登记中心", ["不动产"]),
         ("卫生健康委员会", ["卫生健康", "卫健"]), ("市场监督管理局", ["市场监督", "市场监管"]), ("水利局", ["水利", "水务"]),
         ("供电公司", ["供电", "电力"]), ("自来水有限公司", ["自来水", "供水", "水业"]), ("商务局", ["商务"]),
         ("林业局", ["林业"]), ("农业农村局", ["农业农村"]), ("管委会", ["管委会", "管理委员会"])]
SAME = {"住房保障局": "房产局"}
TERRITORIAL = ("镇人民政府", "乡人民政府", "街道办事处")


def kind(name: str | None) -> str | None:
    name = name or ""
    for k, keys in KINDS:
        if any(x in name for x in keys):
            return k
    return None


def gold_kind(org_type: str) -> str:
    return SAME.get(org_type, org_type)


def same_kind(department_name: str | None, want: str) -> bool:
    got = kind(department_name)
    return got == want or (want in TERRITORIAL and got in TERRITORIAL)


def scoring_kind(name_or_kind: str | None) -> str:
    """One label per kind for confusion tables: territorial kinds fold into 街镇."""
    k = name_or_kind if name_or_kind in {k for k, _ in KINDS} else kind(name_or_kind)
    if k in TERRITORIAL:
        return "街镇（属地）"
    return k or "其他/未知"


def place_core(org: str) -> str | None:
    """'辖区桂花坪街道' / '长沙县黄兴镇人民政府' -> '桂花坪' / '黄兴'"""
    m = re.search(r"([\u4e00-\u9fa5]{2,5}?)(街道|镇|乡)",
                  re.sub(r"^(辖区|长沙市|长沙县|望城区|宁乡市|浏阳市|[\u4e00-\u9fa5]{2}区)", "", org))
    return m.group(1) if m else None


# Our departments' kind codes in the rule's kinds. The rule reads kinds from NAMES, and some official names trip
# it: 住房和城乡建设局 contains 乡 and every 宁乡市 body contains 乡, so the rule scores them as a township. The
# benchmark also reports accuracy by the routed unit's own kind, so the two can be told apart.
KIND_CODE_TO_RULE = {
    "street_office": "街道办事处", "chengguan": "城市管理和行政执法局", "zhujian": "住房和城乡建设局",
    "shengtai": "生态环境局", "jiaotong": "交通运输局", "gongan": "公安局", "jiaojing": "公安局交警大队",
    "jiaoyu": "教育局", "renshe": "人力资源和社会保障局", "yibao": "医疗保障局", "weijian": "卫生健康委员会",
    "shichang": "市场监督管理局", "ziran": "自然资源和规划局", "shuili": "水利局", "minzheng": "民政局",
    "shangwu": "商务局", "nongye": "农业农村局", "linye": "林业局", "fagai": "发展和改革委员会", "caizheng": "财政局",
    "jiguan": "住房公积金管理中心", "budongchan": "不动产登记中心", "power": "供电公司", "water": "自来水有限公司",
    "fangchan": "房产局",
}


def same_unit_kind(kind_code: str | None, want: str) -> bool:
    got = KIND_CODE_TO_RULE.get(kind_code or "")
    return got == want or (want in TERRITORIAL and got in TERRITORIAL)
