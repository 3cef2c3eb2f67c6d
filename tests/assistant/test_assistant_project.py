"""The Rasa project (assistant/, training_data/assistant/, the held-out set) and its tooling in assistant/manage.py.

Fast checks need no Rasa: the domain follows the contract, enough varied examples per intent, the held-out set is
never trained on, the vocabulary generated from the knowledge base (jieba words, guarded regexes, synonyms), the
number patterns, annotation consistency, the endpoints file, the readiness wait.
Checks marked slow run Rasa itself (`rasa data validate`, the test stories); they skip when the Rasa venv or the
trained model is missing, and fail instead when HOTLINE_REQUIRE_RASA=1.
"""
from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml
from support import free_port

from assistant import manage
from assistant.datacheck import (
    JiebaTokens,
    parse_annotated,
    read_nlu_examples,
    read_regexes,
    read_synonyms,
    regex_entities,
    unannotated_regex_matches,
)
from assistant.generate import build_vocabulary, has_number_inside, metric_indicators, write_generated
from hotline.core.config import REPO_ROOT, Settings, get_settings

ASSISTANT = REPO_ROOT / "assistant"
TRAINING_NLU = REPO_ROOT / "training_data" / "assistant" / "nlu"
HAND_REGEXES = TRAINING_NLU / "regex.yml"
HELDOUT = REPO_ROOT / "training_data" / "assistant_heldout"

CONTRACT_INTENTS = {"query_order_status", "submit_complaint", "query_indicator", "greet", "goodbye", "thank",
                    "human_handoff", "out_of_scope", "faq", "inform", "affirm", "deny", "cancel"}
FAQ_ANSWERS = {"faq/service_hours", "faq/time_limit", "faq/scope", "faq/how_to_rate"}
CONTRACT_ENTITIES = {"order_id", "phone", "district", "street", "category", "metric", "period", "department"}
CONTRACT_ACTIONS = {"action_order_status", "validate_complaint_form", "action_submit_complaint",
                    "action_query_indicator", "action_human_handoff", "action_reset_complaint"}
MAIN_INTENTS = ("query_order_status", "submit_complaint", "query_indicator")


@pytest.fixture(scope="module")
def domain() -> dict:
    return yaml.safe_load((ASSISTANT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def training() -> list:
    return read_nlu_examples(TRAINING_NLU)


@pytest.fixture(scope="module")
def heldout() -> list:
    return read_nlu_examples(HELDOUT)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The vocabulary generated from the real knowledge base into a scratch assistant folder."""
    folder = tmp_path_factory.mktemp("assistant")
    settings = Settings(assistant_dir=folder, cache_dir=tmp_path_factory.mktemp("cache"))
    write_generated(settings)
    return folder / "generated"


@pytest.fixture(scope="module")
def patterns(generated) -> dict:
    return read_regexes(generated / "vocabulary.yml", HAND_REGEXES)


@pytest.fixture(scope="module")
def jieba_tokens(generated) -> JiebaTokens:
    return JiebaTokens(generated / "jieba")


def _found(text: str, patterns: dict) -> set[tuple[str, str]]:
    return {(e.entity, e.value) for e in regex_entities(text, patterns)}


# -- the domain follows the contract --------------------------------------------------------------------------------
def test_domain_has_the_contracts_intents_entities_slots_form_and_actions(domain):
    assert set(domain["intents"]) == CONTRACT_INTENTS
    assert set(domain["entities"]) == CONTRACT_ENTITIES
    assert CONTRACT_ACTIONS <= set(domain["actions"])
    slots = domain["slots"]
    for name in ("order_id", "phone", "complaint_text", "complaint_place", "complaint_phone", *CONTRACT_ENTITIES - {
            "order_id", "phone"}):
        assert slots[name]["type"] == "text", name
    assert slots["place_confirmed"]["type"] == "bool"
    assert slots["indicator_query"]["type"] == "any"
    for name in ("metric", "district", "street", "category", "department", "period", "indicator_query"):
        assert slots[name]["influence_conversation"] is False, name
    required = domain["forms"]["complaint_form"]["required_slots"]
    assert [s for s in required if s != "place_confirmed"] == ["complaint_text", "complaint_place", "complaint_phone"]
    # Every slot the form asks for has a question, and every FAQ answer exists.
    for slot in required:
        assert f"utter_ask_{slot}" in domain["responses"], slot
    assert {f"utter_{name}" for name in FAQ_ANSWERS} <= set(domain["responses"])


def test_pipeline_is_the_offline_chinese_one():
    config = yaml.safe_load((ASSISTANT / "config.yml").read_text(encoding="utf-8"))
    pipeline = config["pipeline"]
    names = [c["name"] for c in pipeline]
    by_name = {c["name"]: c for c in pipeline}
    assert names[0] == "JiebaTokenizer" and by_name["JiebaTokenizer"]["dictionary_path"] == "generated/jieba"
    for name in ("RegexFeaturizer", "RegexEntityExtractor"):
        assert by_name[name]["use_word_boundaries"] is False, name
    assert [c.get("analyzer", "word") for c in pipeline if c["name"] == "CountVectorsFeaturizer"] == ["word", "char_wb"]
    assert by_name["DIETClassifier"]["entity_recognition"] is True
    assert by_name["ResponseSelector"]["retrieval_intent"] == "faq"
    # Synonyms apply to what both extractors found; the fallback decides on the final intent.
    assert names.index("EntitySynonymMapper") > max(names.index("DIETClassifier"), names.index("RegexEntityExtractor"))
    assert names[-1] == "FallbackClassifier"
    for name in names:
        if name.startswith("rasa_components."):
            module = name.rsplit(".", 1)[0].replace(".", "/")
            assert (ASSISTANT / f"{module}.py").exists(), name
    assert [p["name"] for p in config["policies"]] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]


def test_no_slot_mapping_runs_a_custom_action_after_every_message(domain):
    """A custom mapping that names an action makes action_extract_slots call it on every turn."""
    for name, slot in domain["slots"].items():
        for mapping in slot["mappings"]:
            assert not (mapping["type"] == "custom" and mapping.get("action")), name


def test_form_answers_never_swallow_cancel_or_a_request_for_a_human(domain):
    for slot in ("complaint_text", "complaint_place", "complaint_phone"):
        in_form = [m for m in domain["slots"][slot]["mappings"]
                   if any(c.get("active_loop") == "complaint_form" for c in m.get("conditions", []))]
        assert in_form and all({"cancel", "human_handoff"} <= set(m["not_intent"]) for m in in_form), slot


def test_responses_are_chinese_and_name_the_emergency_numbers(domain):
    responses = domain["responses"]
    assert "24" in responses["utter_faq/service_hours"][0]["text"]
    scope = responses["utter_faq/scope"][0]["text"]
    assert all(number in scope for number in ("110", "119", "120"))
    assert "系统暂时繁忙，请稍后再试或拨打12345人工服务" in responses["utter_service_busy"][0]["text"]
    assert "{complaint_place}" in responses["utter_ask_place_confirmed"][0]["text"]


def test_faq_time_limit_matches_the_knowledge_base(domain):
    from knowledge_base.kb import load_knowledge_base

    days = [e.time_limit_days for e in load_knowledge_base(get_settings().city_dir).active_entries()]
    text = domain["responses"]["utter_faq/time_limit"][0]["text"]
    assert f"{min(days)}到{max(days)}个工作日" in text


# -- training data ----------------------------------------------------------------------------------------------------
def test_every_intent_has_enough_examples(training, domain):
    counts = Counter(e.intent for e in training)
    for intent in MAIN_INTENTS:
        assert counts[intent] >= 60, intent
    for answer in FAQ_ANSWERS:
        assert counts[answer] >= 15, answer
    for intent in CONTRACT_INTENTS - set(MAIN_INTENTS) - {"faq"}:
        assert counts[intent] >= 15, intent
    assert {e.top_intent for e in training} == CONTRACT_INTENTS


def test_training_examples_are_varied(training):
    """Colloquial and dialect words, typos, numbers written several ways, emoji, English."""
    texts = "\n".join(e.text for e in training)
    for marker in ("搞么子", "冇得", "咯", "嗯咯", "晓得", "进渡", "头诉", "公单", "１", "尾号", "😤", "my order"):
        assert marker in texts, marker
    for intent in MAIN_INTENTS:
        examples = [e.text for e in training if e.intent == intent]
        assert len(set(examples)) == len(examples), f"duplicate examples in {intent}"
        # Not one template: the examples start in many different ways.
        assert len({text[:2] for text in examples}) >= len(examples) // 3, intent


def test_official_questions_cover_every_dimension_and_follow_ups(training):
    questions = [e for e in training if e.intent == "query_indicator"]
    entity_types = Counter(x.entity for e in questions for x in e.entities)
    for entity in ("metric", "district", "street", "category", "department", "period"):
        assert entity_types[entity] >= 8, entity
    texts = {e.text for e in questions}
    assert {"那雨花区呢", "按街道拆分", "换成上个月", "按时办结率最低的三个部门"} <= texts


def _normalised(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", "", text)


def test_heldout_set_is_large_and_never_trained_on(training, heldout):
    assert len(heldout) >= 150
    assert {e.top_intent for e in heldout} == CONTRACT_INTENTS
    trained = {_normalised(e.text) for e in training}
    leaked = [e.text for e in heldout if _normalised(e.text) in trained]
    assert leaked == []


def test_annotations_agree_with_the_regex_extractor_and_jieba(training, heldout, patterns, jieba_tokens):
    """Every span the regex extractor finds is annotated, and every annotation falls on jieba token edges."""
    problems = []
    for example in [*training, *heldout]:
        problems += [f"{example.source}: {example.text}: unannotated {e}" for e in
                     unannotated_regex_matches(example, patterns)]
        problems += [f"{example.source}: {example.text}: not on token edges {e}" for e in
                     jieba_tokens.misaligned(example)]
        problems += [f"{example.source}: unknown entity {e.entity}" for e in example.entities
                     if e.entity not in CONTRACT_ENTITIES]
    assert problems == []


def test_parse_annotated_reads_both_annotation_forms():
    text, entities = parse_annotated('[岳麓](district)的[办结率]{"entity": "metric", "value": "办结率"}')
    assert text == "岳麓的办结率"
    assert [(e.start, e.end, e.entity, e.value) for e in entities] == [(0, 2, "district", "岳麓"),
                                                                        (3, 6, "metric", "办结率")]


# -- the vocabulary generated from the knowledge base -------------------------------------------------------------------
def test_generated_lookups_hold_every_district_and_the_streets_of_yuelu(generated):
    from knowledge_base.gazetteer import load_gazetteer

    data = yaml.safe_load((generated / "vocabulary.yml").read_text(encoding="utf-8"))
    lookups = {b["lookup"]: {x[2:] for x in b["examples"].splitlines()} for b in data["nlu"] if "lookup" in b}
    assert set(lookups) == CONTRACT_ENTITIES - {"order_id", "phone"}
    gazetteer = load_gazetteer(get_settings().city_dir)
    assert set(gazetteer.districts.values()) <= lookups["district"]
    yuelu_streets = {name for name, adcode in gazetteer.streets.values() if adcode == "430104"}
    assert {"望月湖街道", "梅溪湖街道", "麓谷街道"} <= yuelu_streets <= lookups["street"]
    assert {"城管局", "长沙市城市管理和综合执法局"} <= lookups["department"]
    assert {"城市管理", "市容环境卫生", "噪音"} <= lookups["category"]
    assert {"按时办结率", "满意率", "多少件"} <= lookups["metric"]


def test_generated_synonyms_map_aliases_to_canonical_names(generated):
    synonyms = read_synonyms(generated / "vocabulary.yml")
    assert synonyms["岳麓"] == "岳麓区"
    assert synonyms["河西"] == "岳麓区"
    assert synonyms["望月湖"] == "望月湖街道"
    assert synonyms["城管"] == "长沙市城市管理和综合执法局"
    assert synonyms["城管局"] == "长沙市城市管理和综合执法局"
    assert synonyms["噪音"] == "城市管理/城市噪声与油烟执法"
    assert synonyms["上个月"] == "上月"
    assert synonyms["满意度"] == "满意率"
    # Street names that belong to two places keep their own name (the action asks which one).
    assert "高桥" not in synonyms


def test_jieba_dictionary_has_no_numbers_and_keeps_phone_numbers_whole(generated, jieba_tokens):
    words = (generated / "jieba" / "userdict.txt").read_text(encoding="utf-8").split()
    assert "望月湖街道" in words and "按时办结率" in words and "长沙市城市管理和综合执法局" in words
    assert not [w for w in words if has_number_inside(w)]
    assert "12345" not in words
    tokens = [w for w, _, _ in jieba_tokens._tokenizer.tokenize("我的电话13812345678，单号CS20261121000123")]
    assert "13812345678" in tokens and "CS20261121000123" in tokens
    assert "望月湖街道" in [w for w, _, _ in jieba_tokens._tokenizer.tokenize("岳麓区望月湖街道路灯坏了")]


@pytest.mark.parametrize("text, expected", [
    ("岳麓区望月湖街道路灯坏了", {("district", "岳麓区"), ("street", "望月湖街道")}),
    ("芙蓉中路上的井盖没了", set()),                                     # 芙蓉 inside a road name
    ("岳麓山下面垃圾好多", set()),                                       # 岳麓 inside a landmark
    ("天心区城管局的满意度", {("district", "天心区"), ("department", "城管局"), ("metric", "满意度")}),
    ("长沙县城管局", {("district", "长沙县"), ("department", "城管局")}),   # not 长沙县城 + 管局
    ("开福区城市管理和综合执法局", {("district", "开福区"), ("department", "城市管理和综合执法局")}),
    ("长沙市城市管理和综合执法局退单数", {("department", "长沙市城市管理和综合执法局"), ("metric", "退单数")}),
    ("城市管理类诉求上个月多少件", {("category", "城市管理"), ("period", "上个月"), ("metric", "多少件")}),
    ("2026年10月份宁乡的工单量", {("period", "2026年10月份"), ("district", "宁乡"), ("metric", "工单量")}),
    ("三月的满意率", {("period", "三月"), ("metric", "满意率")}),
    ("11月21日投诉的", set()),                                           # a date, not a month
])
def test_generated_patterns_find_names_only_where_they_are_meant(text, expected, patterns):
    assert _found(text, patterns) == expected


@pytest.mark.parametrize("text, expected", [
    ("单号CS20261121000123", {("order_id", "CS20261121000123")}),
    ("cs20261121000123-1办到哪了", {("order_id", "cs20261121000123-1")}),
    ("编号ＣＳ２０２６１１２１０００１２３", {("order_id", "ＣＳ２０２６１１２１０００１２３")}),
    ("20261121000123", {("order_id", "20261121000123")}),
    ("电话13812345678", {("phone", "13812345678")}),
    ("手机138-1234-5678", {("phone", "138-1234-5678")}),
    ("座机0731-84567890", {("phone", "0731-84567890")}),
    ("尾号1234", {("phone", "1234")}),
    ("后四位是５６７８", {("phone", "５６７８")}),
    ("尾号幺三五七", {("phone", "幺三五七")}),
    ("9021", {("phone", "9021")}),
    ("身份证430104199001011234", set()),          # 18 digits: neither a phone nor an order number
    ("我家在12345号楼", set()),
])
def test_number_patterns(text, expected, patterns):
    assert {f for f in _found(text, patterns) if f[0] in ("order_id", "phone")} == expected


def test_category_terms_must_name_taxonomy_entries():
    from assistant.generate import _category_terms
    from knowledge_base.kb import load_knowledge_base

    kb = load_knowledge_base(get_settings().city_dir)
    with pytest.raises(ValueError, match="不存在的分类"):
        _category_terms(kb, {"噪音": "不存在的分类"})


def test_metrics_name_real_indicators():
    from api.routes.indicators import list_indicators

    known = {i["name"] for i in list_indicators()["indicators"]}   # what GET /api/v1/indicators lists
    metrics = metric_indicators()
    assert {m["indicator"] for m in metrics.values()} <= known
    assert metrics["按时办结率"] == {"indicator": "on_time_rate", "group": "on_time_rates"}
    assert metrics["工单数"] == {"indicator": "order_count", "group": None}


def test_generation_is_repeatable(tmp_path):
    settings = Settings(assistant_dir=tmp_path, cache_dir=tmp_path / "cache")
    first = write_generated(settings)
    before = {p.name: p.read_bytes() for p in (tmp_path / "generated").rglob("*") if p.is_file()}
    assert write_generated(settings) == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "generated").rglob("*") if p.is_file()} == before
    assert first["inputs_hash"] == build_vocabulary(settings).inputs_hash


# -- assistant/manage.py ------------------------------------------------------------------------------------------------
def test_missing_rasa_venv_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(manage, "RASA_VENV", tmp_path / "no-venv")
    with pytest.raises(manage.RasaNotInstalled, match="scripts/setup_assistant.sh"):
        manage.rasa_executable()
    with pytest.raises(manage.RasaNotInstalled):
        manage.start_rasa(Settings(cache_dir=tmp_path))


def test_cli_reports_a_missing_venv(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    monkeypatch.setattr(manage, "RASA_VENV", tmp_path / "no-venv")
    result = CliRunner().invoke(manage.cli, ["train"])
    assert result.exit_code == 2
    assert "run scripts/setup_assistant.sh" in result.output


def test_start_rasa_needs_a_trained_model(tmp_path):
    if not (manage.RASA_VENV / "bin" / "rasa").exists():
        pytest.skip("no Rasa venv")
    with pytest.raises(FileNotFoundError, match="hotline assistant train"):
        manage.start_rasa(Settings(cache_dir=tmp_path))


def test_endpoints_file_follows_the_apps_url(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    path = manage.write_endpoints(settings, "http://127.0.0.1:8123/")
    assert yaml.safe_load(path.read_text())["action_endpoint"]["url"] == "http://127.0.0.1:8123/api/v1/assistant/webhook"
    other = manage.write_endpoints(settings, "http://127.0.0.1:9000")
    assert other != path and "9000" in yaml.safe_load(other.read_text())["action_endpoint"]["url"]
    default = yaml.safe_load((ASSISTANT / "endpoints.yml").read_text())["action_endpoint"]["url"]
    assert default == "http://127.0.0.1:8000/api/v1/assistant/webhook"


def test_rasa_runs_with_a_private_home_and_no_telemetry(tmp_path):
    env = manage.rasa_env(Settings(cache_dir=tmp_path))
    assert env["RASA_TELEMETRY_ENABLED"] == "false"
    assert env["HOME"].startswith(str(tmp_path)) and env["TMPDIR"].startswith(str(tmp_path))
    assert env["PYTHONPATH"] == str(Settings(cache_dir=tmp_path).assistant_dir)   # rasa_components.* importable


def test_wait_until_ready_returns_once_the_server_answers():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"Hello from Rasa: 3.6.21")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        manage.wait_until_ready(f"http://127.0.0.1:{server.server_port}", timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def test_wait_until_ready_gives_up():
    with pytest.raises(TimeoutError):
        manage.wait_until_ready(f"http://127.0.0.1:{free_port()}", timeout=1)
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        manage.wait_until_ready(f"http://127.0.0.1:{free_port()}", timeout=30, process=process)


def test_only_known_harmless_validation_warnings_are_accepted():
    settings = get_settings()
    allowed = manage.expected_warnings(settings)
    harmless = ["The utterance 'utter_ask_complaint_place' is not used in any story or rule.",
                "The utterance 'utter_service_busy' is not used in any story or rule.",
                "The following duplicated intents have been found across multiple domain files: faq More info at x"]
    problems = ["The utterance 'utter_greet' is not used in any story or rule.",
                "Issue found in 'rules.yml': Found intent 'faq' in stories which is not part of the domain."]
    assert all(any(p.search(w) for p in allowed) for w in harmless)
    assert not any(any(p.search(w) for p in allowed) for w in problems)
    output = ("/x/io.py:100: UserWarning: first warning\n  More info\n"
              "/x/io.py:100: UserWarning: second\n2026-11-21 15:44:10 INFO done")
    assert [" ".join(w.split()) for w in manage.WARNING.findall(output)] == ["first warning More info", "second"]


def test_training_hash_changes_with_the_data(monkeypatch, tmp_path):
    data = tmp_path / "training_data"
    for folder in manage.TRAINING_FOLDERS:
        (data / folder).mkdir(parents=True)
        (data / folder / "a.yml").write_text("version: '3.1'\n")
    (tmp_path / "assistant" / "generated").mkdir(parents=True)
    for name in ("config.yml", "domain.yml"):
        (tmp_path / "assistant" / name).write_text("x\n")
    monkeypatch.setattr(manage, "TRAINING_DATA", data)
    monkeypatch.setattr(manage, "REPO_ROOT", tmp_path)
    settings = Settings(assistant_dir=tmp_path / "assistant", cache_dir=tmp_path / "cache")
    before = manage.training_inputs_hash(settings)
    assert manage.training_inputs_hash(settings) == before
    (data / "nlu" / "a.yml").write_text("version: '3.1'\nnlu: []\n")
    assert manage.training_inputs_hash(settings) != before
    assert not manage.model_is_current(settings)


# -- with Rasa itself ---------------------------------------------------------------------------------------------------
def _require_rasa() -> None:
    try:
        manage.rasa_executable()
    except manage.RasaNotInstalled as exc:
        if os.environ.get("HOTLINE_REQUIRE_RASA") == "1":
            pytest.fail(f"HOTLINE_REQUIRE_RASA=1 but {exc}")
        pytest.skip(str(exc))


@pytest.mark.slow
def test_rasa_data_validate_is_clean():
    _require_rasa()
    result = manage.validate(get_settings())
    assert result.returncode == 0
    assert result.unexpected == []


@pytest.mark.slow
def test_test_stories_pass(tmp_path):
    _require_rasa()
    settings = get_settings()
    if not manage.model_file(settings).exists():
        if os.environ.get("HOTLINE_REQUIRE_RASA") == "1":
            pytest.fail(f"HOTLINE_REQUIRE_RASA=1 but no trained model at {manage.model_file(settings)}")
        pytest.skip("no trained assistant (hotline assistant train)")
    if not manage.model_is_current(settings):
        pytest.skip("the trained assistant is older than its data (hotline assistant train)")
    result = manage.test_stories(settings, out=tmp_path, check=False)
    failed = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8") \
        if (tmp_path / "failed_test_stories.yml").exists() else ""
    assert result.returncode == 0, failed
    assert "story:" not in failed


def test_the_officials_heldout_questions_are_valid_and_never_trained_on(training):
    """benchmarks/assistant_officials.py's questions: ≥ 60 turns, each with a query the API can answer (a known
    indicator, vitals sign and taxonomy name), none of them in the training data."""
    from assistant.actions.vitals import vital_terms
    from knowledge_base.kb import load_knowledge_base
    from orders.indicators.catalogue import CATALOGUE

    conversations = yaml.safe_load((REPO_ROOT / "training_data" / "assistant_officials" / "heldout.yml")
                                   .read_text(encoding="utf-8"))["conversations"]
    turns = [turn for conversation in conversations for turn in conversation]
    assert len(turns) >= 60
    taxonomy = {name for node in load_knowledge_base(Settings().city_dir).taxonomy.values()
                for name in (node.level1, node.level2, node.level3)}
    for turn in turns:
        expect = turn["expect"]
        if "vitals" in expect:
            assert set(expect["vitals"].get("signs") or []) <= set(vital_terms()), turn
        else:
            assert expect["indicator"] in CATALOGUE and expect.get("category", "城市管理") in taxonomy, turn
    trained = {_normalised(e.text) for e in training}
    assert [t["say"] for t in turns if _normalised(t["say"]) in trained] == []
