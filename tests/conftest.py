"""Shared fixtures: a tiny self-made city knowledge base and a router over it with the FakeEmbedder test double; the
work-order database (`engine`, `factory`) and the app over the tiny-city router (`app_and_keys`, `client`, `server`,
`staff`), each on SQLite and on PostgreSQL. The helpers they use (the tiny city's data, routers, FakeRasa, free
ports) are in tests/support.py.

Tests live in folders that mirror the packages (tests/nlp/, tests/routing/, ...). There are no conftest.py files in
those folders and no __init__.py files: pytest imports each test file as a top-level module, so basenames are unique.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from support import (
    CHINA_ADMIN_CENTERS,
    REAL_CITY_DIR,
    clean_postgres_url,
    fresh_router,
    make_router,
    migrate,
    serving,
    write_tiny_city,
)

from hotline.core.db import make_engine, refuse_read_session_writes, session_factory, transaction


@pytest.fixture(scope="session", autouse=True)
def _read_sessions_never_write():
    """A write in a session opened without `transaction()` would be lost at close: every test fails on one."""
    refuse_read_session_writes(True)
    yield
    refuse_read_session_writes(False)


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A data root holding the tiny city as `changsha` (read-only: copy it before changing anything)."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_tiny_city(root / "changsha")
    return root


@pytest.fixture(scope="session")
def tiny_city_dir(tiny_data_root) -> Path:
    return tiny_data_root / "changsha"


@pytest.fixture
def tiny_city_copy(tmp_path) -> Path:
    """A fresh, writable copy of the tiny city for tests that break or change files."""
    return write_tiny_city(tmp_path / "data" / "changsha")


@pytest.fixture(scope="session")
def tiny_kb(tiny_city_dir):
    from knowledge_base.kb import load_knowledge_base

    return load_knowledge_base(tiny_city_dir)


@pytest.fixture(scope="session")
def tiny_gazetteer(tiny_city_dir):
    from knowledge_base.gazetteer import load_gazetteer

    return load_gazetteer(tiny_city_dir)


@pytest.fixture(scope="session")
def tiny_matcher(tiny_kb, tmp_path_factory):
    """Matcher (FAISS index + calibrated classifier) over the tiny KB, fitted once with FakeEmbedder."""
    from nlp.embedder import FakeEmbedder
    from routing.matcher import Encoders, build_matcher, prepare_encoders

    encoders = Encoders([FakeEmbedder(dim=256)])
    prepare_encoders(tiny_kb, encoders)
    return build_matcher(tiny_kb, encoders, tmp_path_factory.mktemp("tiny_index"))


@pytest.fixture(scope="session")
def base_router(tiny_kb, tiny_gazetteer, tiny_matcher, tiny_data_root, tmp_path_factory):
    """Built once per session (building the jieba segmenter takes ~0.6 s); never learns anything itself."""
    return make_router(kb=tiny_kb, gazetteer=tiny_gazetteer, matcher=tiny_matcher, data_root=tiny_data_root,
                       cache_dir=tmp_path_factory.mktemp("base_router"))


@pytest.fixture
def router(base_router, tmp_path):
    """A Router over the tiny KB with FakeEmbedder and its own feedback store in tmp_path."""
    return fresh_router(base_router, cache_dir=tmp_path)


@pytest.fixture
def router_factory(base_router, tmp_path):
    """Further routers over the same tiny KB, e.g. a second one over the same feedback store (a restart)."""

    def build(**kwargs):
        kwargs.setdefault("cache_dir", tmp_path)
        return fresh_router(base_router, **kwargs)

    return build


@pytest.fixture(scope="session")
def real_gazetteer():
    from knowledge_base.gazetteer import load_gazetteer

    return load_gazetteer(REAL_CITY_DIR)


@pytest.fixture(scope="session")
def real_geocoder(real_gazetteer):
    from routing.geocode import GazetteerGeocoder

    return GazetteerGeocoder(real_gazetteer, foreign_names_file=CHINA_ADMIN_CENTERS)


# ----------------------------------------------------------------------------------- the work-order database
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'orders.sqlite3'}"
    else:
        url = clean_postgres_url()   # a clean schema for this module
    migrate(url)   # the real migrations, not create_all: they are what a deployment runs
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine):
    from orders.models import OrderEmbedding, OrderEvent, RoutingDecision, Supervision, WorkOrder
    from orders.similar import forget_stored_vectors

    with engine.begin() as conn:
        for table in (OrderEmbedding, Supervision, RoutingDecision, OrderEvent, WorkOrder):
            conn.execute(delete(table))
    forget_stored_vectors(engine)
    return session_factory(engine)


# ------------------------------------------------------------------------------- the app over the tiny city
@pytest.fixture(params=["sqlite", "postgresql"])
def app_and_keys(request, router):
    """The app over the tiny-city router, on the embedded SQLite or on PostgreSQL (same tests, both backends)."""
    # These tests walk every step by hand; intake auto-dispatch has its own tests (test_work.py and below).
    from api.app import create_app
    from api.auth.keys import create_api_key
    from hotline.core.migrate import upgrade

    settings = router.settings.model_copy(update={"auto_dispatch": False})
    router.settings = settings
    if request.param == "postgresql":
        url = clean_postgres_url()
        upgrade(url)   # the real migrations
        settings = settings.model_copy(update={"database_url": url})
        router.settings = settings
    app = create_app(settings, router=router)
    with TestClient(app):   # lifespan: migrates the embedded SQLite
        pass
    factory = session_factory(make_engine(settings.database_url))
    keys = {}
    with transaction(factory) as session:
        for name, scopes in {"dispatch": ["orders:read", "orders:write"], "reader": ["orders:read"]}.items():
            keys[name] = create_api_key(session, name=name, scopes=scopes)[1]
    return app, keys, factory


@pytest.fixture
def client(app_and_keys):
    app, keys, _ = app_and_keys
    with TestClient(app) as test_client:
        test_client.keys = keys
        yield test_client


@pytest.fixture
def server(app_and_keys):
    app, keys, factory = app_and_keys
    with serving(app) as base:
        yield base, keys, factory


@pytest.fixture
def staff(app_and_keys):
    from api.auth.staff import create_staff

    _, _, factory = app_and_keys
    people = {"agent": ("agent", None), "dispatcher": ("dispatcher", None), "yuelu": ("handler", "430104001"),
              "yuhua": ("handler", "430111-CHENGGUAN"), "official": ("official", None)}
    with transaction(factory) as session:
        for name, (role, dept) in people.items():
            create_staff(session, username=name, password=f"{name}-Passw0rd!", role=role, department_code=dept)
    return people
