"""The indicator catalogue (orders/indicators/catalogue.py) is the only list of indicators: the API lists and answers
exactly its entries, the assistant's generated NLU data holds every word of it, and the action's tables (read over
HTTP from the listing) agree with it."""
from __future__ import annotations

import yaml

from api.routes.indicators import list_indicators
from assistant.actions.catalogue import Catalogue
from assistant.datacheck import read_regexes, read_synonyms, regex_entities
from assistant.generate import metric_indicators, write_generated
from hotline.core.config import Settings
from orders.indicators import (
    CATALOGUE,
    CHANNEL_LABELS,
    DIMENSIONS,
    GROUP_FUNCTIONS,
    OF_ORDERS,
    SCOPE_FUNCTIONS,
    members,
)

PERIOD = {"start": "2026-11-16", "end": "2026-11-23"}
NAMED = {name: entry for name, entry in CATALOGUE.items() if entry.words}   # the indicators officials ask for


def test_each_entry_is_whole():
    words = [w for e in CATALOGUE.values() for w in (*e.words, *e.ambiguous)]
    assert sorted(w for w in set(words) if words.count(w) > 1) == []          # a word names one indicator
    for entry in CATALOGUE.values():
        assert entry.label and entry.unit and entry.definition, entry.name
        assert not entry.words or entry.label in entry.words, entry.name
        if entry.group:
            assert CATALOGUE[entry.group].kind == "group" and entry in members(entry.group)
    assert {name for name, e in CATALOGUE.items() if e.supports_by} == set(OF_ORDERS)
    assert {name for name, e in CATALOGUE.items() if e.kind == "group"} == set(GROUP_FUNCTIONS)
    singles = {name for name, e in CATALOGUE.items() if e.kind not in ("group", "list", "ranking") and not e.group}
    assert singles == set(SCOPE_FUNCTIONS)


def test_the_api_lists_and_answers_every_entry(client, staff):
    login = client.post("/api/v1/auth/token", json={"username": "official", "password": "official-Passw0rd!"})
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    listing = client.get("/api/v1/indicators").json()
    assert [i["name"] for i in listing["indicators"]] == list(CATALOGUE)
    assert [(d["name"], d["label"]) for d in listing["dimensions"]] == list(DIMENSIONS.items())
    for entry in CATALOGUE.values():
        response = client.get(f"/api/v1/indicators/{entry.name}",
                              params=PERIOD | ({"dimension": "district"} if entry.kind == "ranking" else {}))
        assert response.status_code == 200, (entry.name, response.text)
        if entry.kind == "group":
            assert set(response.json()) - {"scope"} == {m.label for m in members(entry.name)}
        elif entry.group:
            assert response.json()["name"] == entry.label
        if entry.supports_by:
            ranked = client.get(f"/api/v1/indicators/{entry.name}", params=PERIOD | {"by": "district"})
            assert ranked.status_code == 200 and ranked.json()["name"].startswith(entry.label), entry.name


def test_the_actions_tables_come_from_the_listing():
    catalogue = Catalogue.from_listing(list_indicators())
    assert {name: m.label for name, m in catalogue.metrics.items()} == {name: e.label for name, e in NAMED.items()}
    assert {name for name, m in catalogue.metrics.items() if m.rankable} == {n for n, e in NAMED.items() if e.supports_by}
    assert {name for name, m in catalogue.metrics.items() if not m.higher_is_better} == {
        name for name, e in NAMED.items() if e.higher_is_better is False}
    assert catalogue.channel_labels == CHANNEL_LABELS
    # Every word, precise or everyday, leads the action to its own indicator (the most specific word wins).
    assert {(w, n) for n, e in NAMED.items() for w in (*e.words, *e.ambiguous) if catalogue.metric_of(w) != n} == set()


def test_the_generated_nlu_data_holds_every_word(tmp_path):
    manifest = write_generated(Settings(assistant_dir=tmp_path, cache_dir=tmp_path / "cache"))
    vocabulary = tmp_path / "generated" / "vocabulary.yml"
    data = yaml.safe_load(vocabulary.read_text(encoding="utf-8"))
    [lookup] = [b for b in data["nlu"] if b.get("lookup") == "metric"]
    looked_up = {line[2:] for line in lookup["examples"].splitlines()}
    assert {w for e in NAMED.values() for w in (*e.words, *e.ambiguous)} <= looked_up
    synonyms = read_synonyms(vocabulary)
    patterns = read_regexes(vocabulary)
    for entry in NAMED.values():
        for word in entry.words:       # precise words are extracted and mean the label
            assert ("metric", word) in {(e.entity, e.value) for e in regex_entities(word, patterns)}, word
            assert synonyms.get(word, word) == entry.label, word
        for word in entry.ambiguous:   # everyday words are features only
            assert ("metric", word) not in {(e.entity, e.value) for e in regex_entities(word, patterns)}, word
    assert manifest["metrics"] == metric_indicators() == {
        e.label: {"indicator": e.name, "group": e.group} for e in NAMED.values()}
