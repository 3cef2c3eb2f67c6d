"""The router over the tiny city with the FakeEmbedder test double: contract, 以块为主, review, learning."""
from __future__ import annotations

import json

import pytest
from support import GAOQIAO, WANGYUEHU, YUELU, YUHUA

from nlp.normalize import InputError
from routing.feedback import FeedbackMemory, SQLiteFeedbackStore
from routing.geocode import GeoPoint, gcj02_to_wgs84
from routing.router import RouteRequest, parse_location

STALL = "晚上好多摊贩占道摆摊卖烧烤，人行道都过不去"
NEIGHBOUR = "楼上邻居每天半夜跺脚拖椅子，吵得睡不着"
CONSTRUCTION = "小区里工地晚上施工噪音很大"

# 岳麓区 / 雨花区 centroids from geo/changsha_districts.csv (GCJ-02)
YUELU_CENTROID = (28.131757, 112.836857)
YUHUA_CENTROID = (28.063301, 113.08366)


def _assert_department(value):
    assert set(value) == {"code", "name", "level"}
    assert value["level"] in {"city", "district", "street"}


def test_output_has_every_field_of_the_contract(router):
    out = router.route(f"岳麓区望月湖街道桃子湖路{STALL}", order_id="GD-001")
    assert out["id"] == "GD-001"
    assert out["category"] == ["城市管理", "市容秩序", "占道经营"]
    assert out["department"] == {"code": f"{YUELU}-CHENGGUAN", "name": "岳麓区城市管理和综合执法局", "level": "district"}
    assert out["jurisdiction"] == {"district": "岳麓区", "street": "望月湖街道", "community": None}
    assert isinstance(out["confidence"], float) and 0.0 <= out["confidence"] <= 1.0
    assert out["decision"] in {"auto", "suggest", "review"}
    assert out["kb_item"] == {"id": "KB-01-001", "name": "占道经营查处"}
    assert isinstance(out["tags"], list)
    assert isinstance(out["address"], dict)
    assert out["address"]["district"] == {"adcode": YUELU, "name": "岳麓区"}
    assert out["address"]["street"] == {"id": WANGYUEHU, "name": "望月湖街道"}
    assert out["address"]["standard_address"].startswith("湖南省长沙市岳麓区望月湖街道")
    candidates = out["candidates"]
    assert 1 <= len(candidates) <= router.settings.top_k
    assert candidates[0]["department"] == out["department"]
    for candidate in candidates:
        _assert_department(candidate["department"])
        assert set(candidate["kb_item"]) == {"id", "name"}
        assert 0.0 <= candidate["score"] <= 1.0
    codes = [c["department"]["code"] for c in candidates]
    assert len(codes) == len(set(codes)), "one candidate per department"
    assert out["time_limit_days"] == 5
    assert out["co_handlers"] == [{"code": WANGYUEHU, "name": "望月湖街道办事处", "level": "street"}]
    assert "占道经营查处" in out["explanation"] and "岳麓区城市管理和综合执法局" in out["explanation"]
    json.dumps(out, ensure_ascii=False)  # serialisable as the CLI writes it


@pytest.mark.parametrize("place, code", [("岳麓区望月湖街道", f"{YUELU}-CHENGGUAN"), ("雨花区高桥街道", f"{YUHUA}-CHENGGUAN")])
def test_district_matter_goes_to_the_bureau_of_the_place(router, place, code):
    out = router.route(place + STALL)
    assert out["kb_item"]["id"] == "KB-01-001"
    assert out["department"]["code"] == code
    assert out["department"]["level"] == "district"


@pytest.mark.parametrize("place, street, code", [
    ("望月湖社区", "望月湖街道", WANGYUEHU),
    ("高桥大市场旁边的小区", "高桥街道", GAOQIAO),
    ("橘子洲头附近", "桔子洲街道", "430104003"),
])
def test_street_matter_goes_to_that_streets_office(router, place, street, code):
    out = router.route(place + NEIGHBOUR)
    assert out["kb_item"]["id"] == "KB-03-003"
    assert out["department"] == {"code": code, "name": f"{street}办事处", "level": "street"}
    assert out["jurisdiction"]["street"] == street
    # the co-handling police station is the one of the same district
    district = YUELU if code.startswith(YUELU) else YUHUA
    assert out["co_handlers"] == [{"code": f"{district}-GONGAN", "name": router.kb.departments[f"{district}-GONGAN"].name,
                                   "level": "district"}]


def test_community_is_reported(router):
    out = router.route("望月湖社区" + NEIGHBOUR)
    assert out["jurisdiction"]["community"] == "望月湖社区"


def test_street_matter_without_a_street_stays_with_the_territorial_office_to_be_confirmed(router):
    # 以块为主: the kind of unit is the street/town office even when the place does not name which one; the agent
    # asks, and nothing is dispatched automatically to a unit without a code.
    out = router.route("岳麓区" + NEIGHBOUR)
    assert out["department"] == {"code": None, "name": "岳麓区事发地街道办事处（乡镇人民政府，待核实）",
                                 "level": "street", "listed": False}
    assert out["address"]["resolution"] == "街镇未知，请询问事发街道（乡镇）"
    assert out["address"]["question"] == "请问事发地点在岳麓区哪个街道（乡镇）、哪个社区（村）？"
    assert out["decision"] != "auto"


def test_a_town_the_list_does_not_know_is_named_as_the_territorial_office(router):
    letter = ("反映青山镇梅花村楼上邻居天天半夜吵闹的问题。尊敬的领导：您好！我住在青山镇梅花村三组，楼上邻居每天晚上"
              "十二点以后还在跺脚、拖凳子，吵得全家睡不着，找村里调解了几次都没用。恳请领导回复！谢谢！")
    out = router.route(letter)
    assert out["department"]["code"] is None
    assert out["department"]["name"] == "青山镇人民政府"
    assert "不在本市街镇名录" in out["address"]["resolution"]
    assert out["address"]["question"] == "请问事发地是否在本市？青山镇人民政府不在本市街镇名录"
    assert out["decision"] != "auto"


def test_district_matter_without_a_place_goes_to_the_city_bureau(router):
    out = router.route("工地半夜还在打桩施工，噪音吵得睡不着")
    assert out["kb_item"]["id"] == "KB-03-001"
    assert out["department"]["code"] == "CS-ZHUJIAN"
    assert out["jurisdiction"] == {"district": None, "street": None, "community": None}
    assert out["decision"] != "auto"


def test_city_matter_goes_to_the_city_unit_wherever_it_is(router):
    for place in ("岳麓区望月湖街道", "雨花区高桥街道", ""):
        out = router.route(place + "家里突然停水了也没有提前通知")
        assert out["department"]["code"] == "CS-WATER"
        assert out["kb_item"]["id"] == "KB-10-001"


def test_district_alias_places_the_matter(router):
    out = router.route("河西那边" + STALL)
    assert out["department"]["code"] == f"{YUELU}-CHENGGUAN"


@pytest.mark.parametrize("centroid, code", [(YUELU_CENTROID, f"{YUELU}-CHENGGUAN"), (YUHUA_CENTROID, f"{YUHUA}-CHENGGUAN")])
def test_the_unit_follows_a_wgs84_location(router, centroid, code):
    point = GeoPoint(*gcj02_to_wgs84(*centroid), "wgs84")
    out = router.route("楼下" + STALL, point)
    assert out["department"]["code"] == code
    assert out["address"]["source"] == "coordinates"


def test_disputed_entry_goes_to_review(router):
    out = router.route("岳麓区楼下烧烤店油烟太大，整栋楼都是油烟味")
    assert out["kb_item"]["id"] == "KB-03-004"
    assert out["decision"] == "review"
    assert any("争议" in r for r in out["decision_reasons"])
    assert out["department"]["code"] == f"{YUELU}-SHENGTAI"


def test_complaint_about_another_city_goes_to_review(router):
    out = router.route("北京市朝阳区的工地半夜还在打桩施工")
    assert out["decision"] == "review"
    assert any("朝阳区" in r or "北京" in r for r in out["decision_reasons"])
    assert out["jurisdiction"]["district"] is None


def test_clear_complaint_is_auto_dispatched(router):
    out = router.route(f"岳麓区望月湖街道{STALL}")
    assert out["decision"] == "auto"
    assert out["confidence"] >= router.settings.auto_threshold
    assert out["decision_reasons"] == []


def test_raising_the_threshold_stops_auto_dispatch(router_factory, tmp_path):
    strict = router_factory(cache_dir=tmp_path / "strict", auto_threshold=1.01)
    out = strict.route(f"岳麓区望月湖街道{STALL}")
    assert out["decision"] == "suggest"
    assert out["decision_reasons"] == ["置信度不足以自动派单，请坐席确认"]


def test_tags_urgency_and_diversion_pass_through(router):
    out = router.route(f"岳麓区望月湖街道{STALL}，再不管我就发到抖音上曝光，还要去市信访局上访")
    assert set(out["tags"]) == {"舆情", "信访"}
    fire = router.route("望月湖社区楼道里着火了，冒好大的烟")
    assert fire["urgency"] == "紧急" and fire["diversion"] == "119"


def test_personal_data_never_appears_in_the_output(router):
    out = router.route("来电人张三丰，电话138 1234 5678，身份证430104199003071237，望月湖社区" + NEIGHBOUR)
    dumped = json.dumps(out, ensure_ascii=False)
    assert "13812345678" not in dumped and "1234 5678" not in dumped and "430104199003071237" not in dumped
    assert out["entities"]["phones"] == ["138****5678"]
    assert out["entities"]["id_numbers"] == ["4301**********1237"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t\u3000"])
def test_empty_text_is_an_input_error(router, text):
    with pytest.raises(InputError, match="empty"):
        router.route(text)


def test_binary_and_too_long_text_are_input_errors(router):
    with pytest.raises(InputError, match="binary"):
        router.route(b"\x00\xff\xfe junk")
    with pytest.raises(InputError, match="20000"):
        router.route("噪音" * 10_001)


@pytest.mark.parametrize("text", ["\u200b\u200b\ufeff", "\x01\x02\x03"])
def test_invisible_only_text_is_an_input_error(router, text):
    with pytest.raises(InputError):
        router.route(text)


# -------------------------------------------------------------------------------------------- learning


def test_correction_changes_the_next_similar_routing_at_once_and_persists(router, router_factory, tmp_path):
    original = "岳麓区望月湖街道" + CONSTRUCTION
    similar = "岳麓区望月湖街道" + CONSTRUCTION.replace("很大", "太大")
    before = router.route(similar)
    assert before["department"]["code"] == f"{YUELU}-ZHUJIAN"

    router.learn(original, f"{YUELU}-CHENGGUAN", entry_id="KB-03-002")
    after = router.route(similar)
    assert after["department"]["code"] == f"{YUELU}-CHENGGUAN"
    assert after["kb_item"]["id"] == "KB-03-002"
    assert "参考改派记录" in after["explanation"]
    assert len(router.feedback) == 1

    # A new memory over the same SQLite store (a restart) sees the correction.
    store_path = tmp_path / "feedback" / "tiny.sqlite3"
    assert store_path.exists()
    restarted = router_factory(cache_dir=tmp_path / "other-cache", feedback_path=store_path)
    assert len(restarted.feedback) == 1
    assert restarted.route(similar)["department"]["code"] == f"{YUELU}-CHENGGUAN"

    # An unrelated complaint is not pulled.
    assert router.route("岳麓区望月湖街道家里突然停水了")["department"]["code"] == "CS-WATER"


def test_routers_with_their_own_store_do_not_share_corrections(router, router_factory, tmp_path):
    text = "岳麓区望月湖街道" + CONSTRUCTION
    router.learn(text, f"{YUELU}-CHENGGUAN")
    other = router_factory(cache_dir=tmp_path / "elsewhere")
    assert len(other.feedback) == 0
    assert other.route(text)["department"]["code"] == f"{YUELU}-ZHUJIAN"


def test_corrections_are_stored_without_personal_data(router, tmp_path):
    router.learn("来电人李四，电话13912345678，望月湖社区" + CONSTRUCTION, f"{YUELU}-CHENGGUAN")
    rows = SQLiteFeedbackStore(tmp_path / "feedback" / "tiny.sqlite3").all()
    assert len(rows) == 1
    assert "13912345678" not in rows[0]["text"] and "139****5678" in rows[0]["text"]
    assert (rows[0]["kind"], rows[0]["level"], rows[0]["department_code"]) == ("chengguan", "district", f"{YUELU}-CHENGGUAN")


def test_stale_corrections_are_re_embedded_for_another_model(tmp_path):
    from nlp.embedder import FakeEmbedder

    store = SQLiteFeedbackStore(tmp_path / "fb.sqlite3")
    old = FakeEmbedder(dim=16)
    FeedbackMemory(store, embed=old.embed_queries, model_id=old.model_id, dim=16).learn(
        "工地晚上施工噪音很大", kind="chengguan", level="district", department_code=f"{YUELU}-CHENGGUAN")
    new = FakeEmbedder(dim=32)
    memory = FeedbackMemory(store, embed=new.embed_queries, model_id=new.model_id, dim=32)
    hits = memory.nearest(new.embed_queries(["工地晚上施工噪音很大"])[0])
    assert [(h.department_code, round(h.similarity, 4)) for h in hits] == [(f"{YUELU}-CHENGGUAN", 1.0)]


def test_learn_with_an_unknown_department_is_refused(router):
    with pytest.raises(ValueError, match="unknown department code 'NO-SUCH-DEPT'"):
        router.learn("岳麓区" + CONSTRUCTION, "NO-SUCH-DEPT")
    with pytest.raises(ValueError, match="unknown knowledge-base entry 'KB-99-999'"):
        router.learn("岳麓区" + CONSTRUCTION, f"{YUELU}-CHENGGUAN", entry_id="KB-99-999")
    with pytest.raises(InputError):
        router.learn("  ", f"{YUELU}-CHENGGUAN")
    assert len(router.feedback) == 0


# ----------------------------------------------------------------------------------------------- batches


def test_route_many_equals_one_by_one(router):
    texts = [
        f"岳麓区望月湖街道桃子湖路{STALL}",
        "家里突然停水了也没有提前通知",
        "高桥大市场旁边的小区" + NEIGHBOUR,
        "岳麓区楼下烧烤店油烟太大，整栋楼都是油烟味",
        "北京市朝阳区的工地半夜还在打桩施工",
        "樓上鄰居每天半夜跺腳，電話138 1234 5678",
        "雨花区高桥街道商铺门口音响喇叭放得震天响😡",
    ]
    requests = [RouteRequest(f"id-{i}", t) for i, t in enumerate(texts)]
    requests.append(RouteRequest("id-geo", "楼下" + STALL, GeoPoint(*YUHUA_CENTROID, "gcj02")))
    batched = router.route_many(requests, batch_size=3)
    single = [router.route(r.text, r.location, order_id=r.id) for r in requests]
    assert [b["id"] for b in batched] == [r.id for r in requests]
    assert batched == single


def test_route_many_reports_progress(router):
    seen = []
    router.route_many([RouteRequest(str(i), STALL) for i in range(5)], batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]


# ---------------------------------------------------------------------------------------------- locations


def test_parse_location():
    assert parse_location(None) is None and parse_location({}) is None
    point = parse_location({"lat": "28.1", "lng": 112.9, "datum": "GCJ-02"})
    assert (point.lat, point.lng, point.datum) == (28.1, 112.9, "gcj02")
    assert parse_location({"lat": 28.1, "lng": 112.9}).datum == "wgs84"
    with pytest.raises(ValueError, match="datum"):
        parse_location({"lat": 28.1, "lng": 112.9, "datum": "cgcs2000"})
    with pytest.raises(ValueError, match="numeric"):
        parse_location({"lat": "north", "lng": 112.9})
    with pytest.raises(ValueError, match="out of range"):
        parse_location({"lat": 128.1, "lng": 112.9})
    with pytest.raises(ValueError, match="must be an object"):
        parse_location("28.1,112.9")


# ------------------------------------------------------------------------------------ with a history model


@pytest.fixture(scope="module")
def yuelu_history_model(base_router):
    """A history classifier trained (with the router's own FakeEmbedder) on 岳麓区 orders only."""
    from routing.history import LabelledRecord
    from routing.history_model import train_history_model

    codes = {"chengguan": f"{YUELU}-CHENGGUAN", "zhujian": f"{YUELU}-ZHUJIAN", "street_office": WANGYUEHU,
             "shengtai": f"{YUELU}-SHENGTAI", "water": "CS-WATER"}
    records = []
    for entry in base_router.kb.entries.values():
        for example in entry.examples:
            for place in ("岳麓区", "望月湖", "河西"):
                records.append(LabelledRecord(line=len(records) + 2, text=place + example, department=codes[entry.lead],
                                              category="/".join(base_router.kb.category_path(entry.category))))
    model, skipped = train_history_model(records, base_router.matcher.encoders)
    assert skipped == []
    return model


def test_history_model_answers_in_its_own_label_space(router, yuelu_history_model):
    router.history_model = yuelu_history_model
    out = router.route(f"岳麓区望月湖街道{STALL}")
    assert out["department"]["code"] == f"{YUELU}-CHENGGUAN"
    assert out["kb_department"]["code"] == f"{YUELU}-CHENGGUAN"
    assert out["category"] == ["城市管理", "市容秩序", "占道经营"] == out["kb_category"]
    assert 0.0 < out["category_confidence"] <= 1.0
    labels = [c["label"] for c in out["department_candidates"]]
    assert labels[0] == f"{YUELU}-CHENGGUAN" and len(labels) == len(set(labels))
    assert out["confidence"] == out["department_candidates"][0]["score"]
    assert out["decision"] == ("auto" if out["confidence"] >= router.settings.auto_threshold else "suggest")
    water = router.route("家里突然停水了也没有提前通知")
    assert water["department"]["code"] == "CS-WATER"


def test_history_model_keeps_a_disputed_matter_in_review(router, yuelu_history_model):
    router.history_model = yuelu_history_model
    out = router.route("岳麓区楼下烧烤店油烟太大，整栋楼都是油烟味")
    assert out["decision"] == "review"


def test_history_model_does_not_move_a_complaint_to_another_district(router, yuelu_history_model):
    router.history_model = yuelu_history_model
    out = router.route(f"雨花区高桥街道{STALL}")
    assert out["jurisdiction"]["district"] == "雨花区"
    assert out["department"]["code"] in {f"{YUHUA}-CHENGGUAN", "CS-CHENGGUAN"}


# ------------------------------------------------------------------------------------------- review


@pytest.mark.parametrize("text", [
    "我电话是13812345678我住在望月湖社区3栋" + NEIGHBOUR,                 # ASR: the number runs into the address
    "身份证430104199003071230住望月湖社区3栋" + NEIGHBOUR,               # a mistyped ID number is still personal
    "望月湖社区13812345678湘味烧烤店占道摆摊卖烧烤",
])
def test_no_phone_or_id_digits_in_the_address_or_entities(router, text):
    out = router.route(text)
    assert out["jurisdiction"]["street"] == "望月湖街道"
    dumped = json.dumps({k: out[k] for k in ("address", "entities", "explanation", "candidates")}, ensure_ascii=False)
    for secret in ("12345678", "1234567", "9003071230"):
        assert secret not in dumped, dumped


def test_a_phone_with_full_width_dashes_is_not_stored_with_a_correction(router, tmp_path):
    router.learn("电话138－1234－5678，望月湖社区" + CONSTRUCTION, f"{YUELU}-CHENGGUAN")
    stored = SQLiteFeedbackStore(tmp_path / "feedback" / "tiny.sqlite3").all()[0]["text"]
    assert "1234" not in stored and "138****5678" in stored


def test_an_emoji_cut_in_half_by_the_client_is_still_routed(router):
    out = router.route(f"岳麓区望月湖街道{STALL}\ud83d")       # a lone surrogate: the client truncated 😡
    assert out["department"]["code"] == f"{YUELU}-CHENGGUAN"
    json.dumps(out, ensure_ascii=False).encode("utf-8")
    router.learn(f"岳麓区望月湖街道{CONSTRUCTION}\ud83d", f"{YUELU}-CHENGGUAN")


def test_history_model_never_names_a_street_office_of_another_district(router, yuelu_history_model):
    router.history_model = yuelu_history_model
    out = router.route("雨花区" + NEIGHBOUR)          # a street matter in 雨花区, street unknown
    assert out["jurisdiction"]["district"] == "雨花区"
    assert out["department"]["code"] is None, out["department"]
    assert out["department"]["name"].startswith("雨花区"), out["department"]
    assert out["decision"] != "auto"


def _candidate(name: str, level: str, code: str | None = "X") -> dict:
    return {"department": {"code": code, "name": name, "level": level}}


def test_a_territorial_office_is_offered_third_when_the_first_three_are_bureaus():
    from routing.router import Router

    bureaus = [_candidate(f"局{i}", "district", f"B{i}") for i in range(4)]
    office = _candidate("望月湖街道办事处", "street", "430104001")
    moved = Router._with_a_territorial_option(bureaus + [office])
    assert [c["department"]["name"] for c in moved] == ["局0", "局1", "望月湖街道办事处", "局2", "局3"]
    already = [bureaus[0], office] + bureaus[1:]
    assert Router._with_a_territorial_option(already) == already          # already among the first three
    assert Router._with_a_territorial_option(bureaus) == bureaus           # none to offer


def test_two_unlisted_offices_are_two_candidates():
    from routing.router import Router

    a, b = _candidate("洪桥镇人民政府", "street", None), _candidate("白沙乡人民政府", "street", None)
    assert Router._dedupe_departments([a, b, a], None) == [a, b]
