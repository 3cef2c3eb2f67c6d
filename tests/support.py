"""Shared helpers for the tests (not fixtures: those are in tests/conftest.py). Import them with
`from support import ...`: tests/ is on sys.path because tests/conftest.py lives there.

The tiny city has two districts (岳麓区 430104, 雨花区 430111) and three streets (望月湖街道, 桔子洲街道 in 岳麓区;
高桥街道 in 雨花区). Its responsibility list splits noise by scenario (construction / commercial / neighbours),
holds one disputed entry (餐饮油烟) and one city-level utility entry (停水). Nothing here loads a real model.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from hotline.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent   # tests/support.py → the repository
REAL_DATA_ROOT = REPO_ROOT / "knowledge_base" / "data"
REAL_CITY_DIR = REAL_DATA_ROOT / "changsha"
CHINA_ADMIN_CENTERS = REAL_DATA_ROOT / "common" / "china_admin_centers.csv"

def clean_postgres_url() -> str:
    """HOTLINE_TEST_DATABASE_URL with an empty public schema, for the caller's migrations. Without a URL the test is
    skipped, unless HOTLINE_REQUIRE_POSTGRES says PostgreSQL must be tested (CI)."""
    from sqlalchemy import text

    from hotline.core.db import make_engine

    url = os.environ.get("HOTLINE_TEST_DATABASE_URL")
    if not url:
        if os.environ.get("HOTLINE_REQUIRE_POSTGRES"):
            raise RuntimeError("HOTLINE_REQUIRE_POSTGRES is set but HOTLINE_TEST_DATABASE_URL is not")
        pytest.skip("PostgreSQL: set HOTLINE_TEST_DATABASE_URL (scripts/test_postgres.sh starts one)")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


YUELU, YUHUA = "430104", "430111"
WANGYUEHU, JUZIZHOU, GAOQIAO = "430104001", "430104003", "430111007"

DEPARTMENT_HEADER = ["code", "name", "kind", "level", "district_adcode", "district_name", "street_id", "aliases",
                     "parent_code"]
_KIND_NAMES = {
    "chengguan": ("城市管理和综合执法局", "城管|城管局"),
    "zhujian": ("住房和城乡建设局", "住建局"),
    "shengtai": ("生态环境局", "环保局"),
    "gongan": ("公安局", "派出所"),
    "hotline": ("12345政务服务便民热线", "12345"),
}


def _department_rows() -> list[dict]:
    rows = []
    for kind, (name, aliases) in _KIND_NAMES.items():
        rows.append({"code": f"CS-{kind.upper()}", "name": f"长沙市{name}", "kind": kind, "level": "city",
                     "aliases": aliases})
        for adcode, district in ((YUELU, "岳麓区"), (YUHUA, "雨花区")):
            rows.append({"code": f"{adcode}-{kind.upper()}", "name": f"{district}{name}", "kind": kind,
                         "level": "district", "district_adcode": adcode, "district_name": district,
                         "parent_code": f"CS-{kind.upper()}"})
    rows.append({"code": "CS-WATER", "name": "长沙水业集团", "kind": "water", "level": "city", "aliases": "自来水公司|水司"})
    for sid, name, adcode, district in ((WANGYUEHU, "望月湖街道", YUELU, "岳麓区"), (JUZIZHOU, "桔子洲街道", YUELU, "岳麓区"),
                                        (GAOQIAO, "高桥街道", YUHUA, "雨花区")):
        rows.append({"code": sid, "name": f"{name}办事处", "kind": "street_office", "level": "street",
                     "district_adcode": adcode, "district_name": district, "street_id": sid})
    return rows


TAXONOMY_HEADER = ["code", "level1", "level2", "level3", "description", "ext_gbt39666"]
TAXONOMY_ROWS = [
    ["010101", "城市管理", "市容秩序", "占道经营", "流动摊贩、店外经营占用道路", "城乡建设/市容环境"],
    ["030101", "生态环境", "噪声污染", "建筑施工噪声", "工地夜间施工噪声", ""],
    ["030102", "生态环境", "噪声污染", "商业经营噪声", "商铺音响喇叭招揽噪声", ""],
    ["030103", "生态环境", "噪声污染", "邻里生活噪声", "楼上楼下邻居噪声", ""],
    ["030201", "生态环境", "大气污染", "餐饮油烟", "饭店烧烤油烟扰民", ""],
    ["100101", "公用事业", "供水", "停水", "停水、水压低", ""],
]


def _entry(id_, name, category, lead, level, keywords, examples, **extra) -> dict:
    entry = {
        "id": id_, "name": name, "type": extra.pop("type", "行政处罚"), "category": category,
        "legal_basis": "《中华人民共和国噪声污染防治法》；《长沙市城市管理条例》", "duty_mode": "接诉即查、现场核查、依法处置",
        "lead": lead, "level": level, "co_handlers": extra.pop("co_handlers", []), "scope": "全市",
        "time_limit_days": extra.pop("time_limit_days", 5), "boundary": extra.pop("boundary", ""),
        "keywords": keywords, "examples": examples, "disputed": extra.pop("disputed", False),
        "effective_from": "2024-01-01", "version": 1,
    }
    entry.update(extra)
    return entry


ENTRIES = [
    _entry("KB-01-001", "占道经营查处", "010101", "chengguan", "district", ["摆摊", "流动摊贩", "占道"], [
        "晚上好多摊贩占道摆摊卖烧烤，人行道都过不去",
        "小区门口流动摊贩推着三轮车占道卖水果",
        "夜市摊位摆到马路中间，占道经营堵得车都过不去",
        "早餐店把桌子摆到人行道上占道经营",
        "路边摆摊卖菜的把整条人行道都占满了",
    ], co_handlers=["street_office"], boundary="店铺证照问题属市场监管"),
    _entry("KB-03-001", "建筑施工夜间噪声查处", "030101", "zhujian", "district", ["工地", "施工", "打桩"], [
        "工地半夜还在打桩施工，噪音吵得睡不着",
        "旁边工地凌晨两点还在浇混凝土，搅拌车轰隆隆",
        "建筑工地晚上十一点以后还在施工作业，电钻声很大",
        "地铁工地夜间施工没有夜间施工许可证，噪音扰民",
        "工地塔吊和挖机半夜作业，施工噪声太大",
    ], boundary="商铺喇叭噪声见KB-03-002；邻居噪声见KB-03-003"),
    _entry("KB-03-002", "商业经营噪声查处", "030102", "chengguan", "district", ["喇叭", "音响", "招揽"], [
        "商铺门口音响喇叭放得震天响招揽顾客",
        "服装店门口用大喇叭循环播放促销广告，吵死了",
        "超市门口摆音箱放歌招揽生意，声音特别大",
        "手机店门口的喇叭一天到晚喊清仓甩卖",
        "商业街店铺用高音喇叭叫卖，音响噪音扰民",
    ], boundary="工地施工噪声见KB-03-001；邻居噪声见KB-03-003"),
    _entry("KB-03-003", "邻里生活噪声调处", "030103", "street_office", "street", ["楼上", "邻居", "跺脚"], [
        "楼上邻居每天半夜跺脚拖椅子，咚咚咚吵得睡不着",
        "隔壁邻居家里天天深夜唱K打麻将，邻里噪音",
        "楼上住户小孩在家里拍球跑跳，邻居沟通无果",
        "对门邻居养的狗整晚叫个不停，邻里纠纷",
        "楼上邻居凌晨还在家里搬家具，噪声很大",
    ], type="公共服务", co_handlers=["gongan"], boundary="工地噪声见KB-03-001；商铺喇叭见KB-03-002"),
    _entry("KB-03-004", "餐饮油烟污染查处", "030201", "shengtai", "district", ["油烟", "烧烤", "排烟"], [
        "楼下饭店油烟直排，熏得家里窗户都不敢开",
        "烧烤店油烟太大，整栋楼都是油烟味",
        "餐馆没有装油烟净化器，油烟直接排到居民楼",
        "小区底商的火锅店排烟管道对着我家窗户，油烟呛人",
        "夜宵店油烟污染严重，楼上住户衣服都晒不了",
    ], disputed=True, co_handlers=["chengguan"], boundary="露天烧烤属城管（占道经营）"),
    _entry("KB-10-001", "停水报修与供水保障", "100101", "water", "city", ["停水", "水压", "没水"], [
        "家里突然停水了也没有提前通知",
        "小区停水一整天了，什么时候来水",
        "自来水水压太低，高层住户家里没水用",
        "连续三天停水，供水公司也不给个说法",
        "突然停水没有任何通知，家里做不了饭",
    ], type="公共服务", time_limit_days=2),
]

STREETS_HEADER = ["street_id", "stats_code_12", "street_name", "short_name", "pinyin", "district_adcode",
                  "district_name", "dist_centroid_lng", "dist_centroid_lat"]
STREET_ROWS = [
    [WANGYUEHU, WANGYUEHU + "000", "望月湖街道", "望月湖", "wang yue hu", YUELU, "岳麓区", "112.836857", "28.131757"],
    [JUZIZHOU, JUZIZHOU + "000", "桔子洲街道", "桔子洲", "jie zi zhou", YUELU, "岳麓区", "112.836857", "28.131757"],
    [GAOQIAO, GAOQIAO + "000", "高桥街道", "高桥", "gao qiao", YUHUA, "雨花区", "113.08366", "28.063301"],
]
PLACES_HEADER = ["name", "type", "district_adcode", "street_id", "aliases", "lng", "lat", "datum", "note"]
PLACE_ROWS = [
    ["桃子湖路", "road", "", WANGYUEHU, "", "", "", "", ""],
    ["望月湖社区", "community", "", WANGYUEHU, "", "112.9455", "28.1912", "gcj02", "test place"],
    ["高桥大市场", "market", "", GAOQIAO, "高桥市场", "113.0352", "28.1583", "gcj02", ""],
    ["橘子洲头", "landmark", "", JUZIZHOU, "橘洲", "", "", "", ""],
]
DISTRICT_ALIAS_ROWS = [["河西", YUELU]]


def write_csv(path: Path, header: list[str], rows: list, *, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as handle:
        if rows and isinstance(rows[0], dict):
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        else:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return path


def write_yaml(path: Path, entries: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_tiny_city(city_dir: Path) -> Path:
    """Write the tiny knowledge base + gazetteer into `city_dir` and return it."""
    write_csv(city_dir / "departments.csv", DEPARTMENT_HEADER, _department_rows())
    write_csv(city_dir / "taxonomy" / "01_tiny.csv", TAXONOMY_HEADER, TAXONOMY_ROWS)
    write_yaml(city_dir / "responsibilities" / "01_tiny.yaml", ENTRIES)
    geo = city_dir / "geo"
    geo.mkdir(parents=True, exist_ok=True)
    for name in ("changsha_districts.csv", "changsha_districts.geojson"):
        shutil.copyfile(REAL_CITY_DIR / "geo" / name, geo / name)
    write_csv(geo / "changsha_streets.csv", STREETS_HEADER, STREET_ROWS)
    write_csv(geo / "places.csv", PLACES_HEADER, PLACE_ROWS)
    write_csv(geo / "district_aliases.csv", ["alias", "district_adcode"], DISTRICT_ALIAS_ROWS)
    return city_dir


def _feedback_memory(matcher, path: Path):
    from routing.feedback import FeedbackMemory, SQLiteFeedbackStore

    first = matcher.encoders.embedders[0]
    return FeedbackMemory(SQLiteFeedbackStore(path), embed=lambda texts: first.embed_queries(list(texts)),
                          model_id=first.model_id, dim=first.dim)


def make_router(*, kb, gazetteer, matcher, data_root: Path, cache_dir: Path, feedback_path: Path | None = None,
                **settings_overrides):
    """A Router over the tiny city; corrections persist in SQLite under `cache_dir` (or at `feedback_path`)."""
    from routing.geocode import GazetteerGeocoder
    from routing.router import Router

    settings_overrides.setdefault("database_url", f"sqlite:///{cache_dir / 'hotline.sqlite3'}")
    settings_overrides.setdefault("state_dir", cache_dir / "state")
    settings = Settings(data_root=data_root, cache_dir=cache_dir, **settings_overrides)
    feedback = _feedback_memory(matcher, feedback_path or cache_dir / "feedback" / "tiny.sqlite3")
    geocoder = GazetteerGeocoder(gazetteer, foreign_names_file=CHINA_ADMIN_CENTERS)
    return Router(kb=kb, gazetteer=gazetteer, geocoder=geocoder, matcher=matcher, settings=settings,
                  feedback=feedback, embedder_note="FakeEmbedder (test double)")


def fresh_router(base, *, cache_dir: Path, feedback_path: Path | None = None, **settings_overrides):
    """`base` with its own settings and its own (persistent) feedback memory; KB, matcher and segmenter shared."""
    router = copy.copy(base)
    settings_overrides.setdefault("database_url", f"sqlite:///{cache_dir / 'hotline.sqlite3'}")
    settings_overrides.setdefault("state_dir", cache_dir / "state")
    router.settings = Settings(data_root=base.settings.data_root, cache_dir=cache_dir, **settings_overrides)
    router.feedback = _feedback_memory(base.matcher, feedback_path or cache_dir / "feedback" / "tiny.sqlite3")
    return router


def migrate(url: str) -> None:
    """The real migrations (alembic upgrade head), not create_all: they are what a deployment runs."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    command.upgrade(config, "head")


# -- the orders API ------------------------------------------------------------------------------------------
STALL = "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去，电话13812345678"


# -- loopback ----------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port free right now (for a server the test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app):
    """The app on a real uvicorn server on loopback (in a thread) for as long as the block runs; yields its URL."""
    import uvicorn

    port = free_port()
    # Keep-alive longer than uvicorn's 5 s default: under CI load a pooled connection could sit idle that long and
    # be closed by the server just as a client reused it (an httpx.ReadError in the 200-concurrent-orders test).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_keep_alive=75))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)



# -- a fake Rasa on loopback -----------------------------------------------------------------------------------
def fake_rasa_answer(sender: str, message: str) -> list[dict]:
    """What FakeRasa says: an echo, plus buttons when asked to choose and a bar chart when asked for a ranking —
    the shapes the real assistant sends (text, buttons, json_message → custom)."""
    answer = [{"recipient_id": sender, "text": f"收到您的消息：{message}"}]
    if "选择" in message:
        answer.append({"recipient_id": sender, "text": "请选择：",
                       "buttons": [{"title": "查询工单", "payload": "/query_order_status"},
                                   {"title": "我要投诉", "payload": "/submit_complaint"}]})
    if "排名" in message:
        answer.append({"recipient_id": sender, "custom": {"chart": {
            "type": "bar", "title": "本月诉求量（按区）", "unit": "件",
            "labels": ["岳麓区", "雨花区", "开福区"], "values": [128, 96.5, 40]}}})
    return answer


class FakeRasa:
    """A real HTTP server on 127.0.0.1 speaking Rasa's REST channel: POST /webhooks/rest/webhook, GET / and
    GET /status. Records every turn; can be made slow (`delay_s`) or broken (`status`, `raw_body`)."""

    def __init__(self) -> None:
        self.turns: list[dict] = []
        self.delay_s = 0.0
        self.status = 200
        self.raw_body: bytes | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:   # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/status":
                    self._send(200, json.dumps({"model_file": "fake.tar.gz", "num_active_training_jobs": 0}).encode())
                else:
                    self._send(200, b"Hello from Rasa: 3.6.21", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/webhooks/rest/webhook":
                    self._send(404, b'{"status":"failure"}')
                    return
                turn = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.turns.append(turn)
                time.sleep(fake.delay_s)
                if fake.raw_body is not None or fake.status != 200:
                    self._send(fake.status, fake.raw_body or b'{"error":"boom"}')
                    return
                self._send(200, json.dumps(fake_rasa_answer(turn["sender"], turn["message"]),
                                           ensure_ascii=False).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeRasa:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback address nothing listens on (connection refused: Rasa is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- a real browser ------------------------------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Known to work on these machines; without the background-networking flags Chromium keeps trying Google's hosts.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def missing(flag: str, reason: str):
    """Skip for a missing part, or fail when the run asked for it (HOTLINE_REQUIRE_BROWSER=1 in CI)."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{flag}=1 but {reason}")
    pytest.skip(reason)


def start_chromium(profile_dir: Path, *, window: str, page_load_timeout_s: float = 20):
    """Debian's headless Chromium under Selenium (skipped, or failed under HOTLINE_REQUIRE_BROWSER=1, when absent)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing("HOTLINE_REQUIRE_BROWSER", "Chromium is not installed (run scripts/install_browser.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("HOTLINE_REQUIRE_BROWSER", "selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(page_load_timeout_s)
    return driver
