"""Assembling a ready router from settings: knowledge base, gazetteer, embedders, index, feedback, history model."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hotline.core.config import Settings
from knowledge_base.gazetteer import Gazetteer, load_gazetteer
from knowledge_base.kb import load_knowledge_base
from routing.calibration import calibrate_router
from routing.feedback import FeedbackMemory, FeedbackStore, SQLiteFeedbackStore
from routing.geocode import GazetteerGeocoder
from routing.history import read_labelled
from routing.history_model import HistoryModel
from routing.matcher import Encoders, build_matcher, load_matcher, prepare_encoders
from routing.policy import load_city_policy
from routing.router import Router, RouteRequest

log = logging.getLogger(__name__)


@dataclass
class EncoderChoice:
    encoders: Encoders
    note: str


def choose_encoders(settings: Settings) -> EncoderChoice:
    """The embedders the router uses, and a line saying which and why (reported at start-up)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from nlp.embedder import load_embedder  # after the offline switches: transformers reads them when imported

    primary, note = load_embedder(settings)
    embedders = [primary]
    if settings.embedder == "auto" and settings.ensemble and primary.model_id.startswith("e5"):
        try:
            second, second_note = load_embedder(settings, kind="use")
            embedders.append(second)
            note += f" + {second_note} (scores averaged)"
        except Exception as exc:  # the ensemble is an improvement, not a requirement
            note += f"; USE not added to the ensemble: {exc}"
    return EncoderChoice(Encoders(embedders), note)


def index_root(settings: Settings) -> Path:
    return settings.index_dir


def calibration_file(settings: Settings) -> Path:
    return settings.city_dir / "calibration.jsonl"


def build_index(settings: Settings, *, choice: EncoderChoice | None = None,
                progress: Callable[[str], None] = lambda m: None):
    """(Re)build the index and the calibrated matcher; returns the matcher."""
    return build_router(settings, rebuild_index=True, choice=choice, progress=progress,
                        load_active_model=False).matcher


def build_geocoder(settings: Settings, gazetteer: Gazetteer | None = None) -> GazetteerGeocoder:
    """The city's geocoder (gazetteer names, district polygons, other cities' names to notice a foreign place)."""
    gazetteer = gazetteer or load_gazetteer(settings.city_dir, city_name=settings.city_name)
    common = settings.data_root / "common" / "china_admin_centers.csv"
    return GazetteerGeocoder(gazetteer, foreign_names_file=common if common.exists() else None,
                             city_adcode=settings.city_adcode, province_name=settings.province_name)


def build_router(settings: Settings, *, model_dir: Path | None = None, rebuild_index: bool = False,
                 build_missing_index: bool = True, feedback_store: FeedbackStore | None = None,
                 choice: EncoderChoice | None = None, progress: Callable[[str], None] = lambda m: None,
                 load_active_model: bool = True) -> Router:
    kb = load_knowledge_base(settings.city_dir)
    gazetteer = load_gazetteer(settings.city_dir, city_name=settings.city_name)
    geocoder = build_geocoder(settings, gazetteer)
    choice = choice or choose_encoders(settings)
    progress(f"embeddings: {choice.note}")
    prepare_encoders(kb, choice.encoders)
    calibration = calibration_file(settings)
    built = False
    if not rebuild_index:
        try:
            matcher = load_matcher(kb, choice.encoders, index_root(settings))
        except FileNotFoundError:
            if not build_missing_index:
                raise
            progress("no index yet: building it (once)")
            rebuild_index = True
    if rebuild_index:
        matcher = build_matcher(kb, choice.encoders, index_root(settings), out_of_fold=not calibration.exists(),
                                progress=progress)
        built = True
    first = choice.encoders.embedders[0]
    store = feedback_store or SQLiteFeedbackStore(settings.cache_dir / "feedback" / f"{settings.city}.sqlite3")
    feedback = FeedbackMemory(store, embed=lambda texts: first.embed_queries(list(texts)), model_id=first.model_id,
                              dim=first.dim, lifetime_days=settings.correction_lifetime_days)
    router = Router(kb=kb, gazetteer=gazetteer, geocoder=geocoder, matcher=matcher, settings=settings,
                    feedback=feedback, embedder_note=choice.note, city_policy=load_city_policy(settings.city_dir))
    model_dir = model_dir or (active_model_dir(settings) if load_active_model else None)
    if model_dir:
        router.history_model = load_history_model(router, model_dir)
        progress(f"history model: {model_dir} ({router.history_model.model_id})")
    if built and calibration.exists():
        calibrate_router(router, read_labelled(calibration, category_column=None), progress=progress)
    fill_correction_origins(router)
    return router


ACTIVE_MODEL_FILE = "active_model.json"


def load_history_model(router: Router, model_dir: Path) -> HistoryModel:
    """The trained model, refused (RuntimeError, saying what to do) when the embeddings or the list changed."""
    return HistoryModel.load(Path(model_dir), encoder_id=router.matcher.encoders.model_id,
                             kb_hash=router.kb.content_hash, kind_keys=router.kind_keys)


def active_model_dir(settings: Settings) -> Path | None:
    """HOTLINE_MODEL_DIR, else the model `hotline model use` chose, else none."""
    if settings.model_dir:
        return settings.model_dir
    chosen = settings.state_dir / ACTIVE_MODEL_FILE
    if chosen.exists():
        return Path(json.loads(chosen.read_text(encoding="utf-8"))["model_dir"])
    return None


def use_model(settings: Settings, model_dir: Path | None) -> None:
    """Make `model_dir` the model `serve` loads (None: back to the knowledge base alone)."""
    chosen = settings.state_dir / ACTIVE_MODEL_FILE
    if model_dir is None:
        chosen.unlink(missing_ok=True)
        return
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    chosen.write_text(json.dumps({"model_dir": str(Path(model_dir).resolve())}), encoding="utf-8")


def fill_correction_origins(router: Router) -> int:
    """Corrections stored before the router's own answer was recorded with them get it now (once, persisted):
    without it they could only steer complaints the router already sends to the corrected kind of unit."""
    feedback = router.feedback
    rows = feedback.without_origin() if feedback is not None else []
    if rows:
        origins = router.correction_origins([router.prepare(RouteRequest("", r["text"])) for r in rows])
        for row, origin in zip(rows, origins):
            feedback.set_origin(row["id"], **origin)
    return len(rows)


def rebuild_router(current: Router, settings: Settings, *, progress: Callable[[str], None] = lambda m: None) -> Router:
    """A new router over the knowledge base as it is on disk now, with the running router's embedders, corrections
    and history model (nothing reloaded that did not change)."""
    choice = EncoderChoice(current.matcher.encoders, current.embedder_note)
    fresh = build_router(settings, rebuild_index=True, choice=choice, progress=progress,
                         feedback_store=current.feedback.store if hasattr(current.feedback, "store") else None)
    fresh.feedback = current.feedback
    model = current.history_model
    if model is not None and model.manifest.get("kb_hash") not in (None, fresh.kb.content_hash):
        # Its knowledge-base inputs changed meaning: the list alone routes until the model is retrained.
        log.warning("history model %s dropped: trained on another knowledge base; retrain with `hotline train`",
                       model.model_id)
        model = None
    fresh.history_model = model
    return fresh


class RouterReloader:
    """Rebuilds the router in a background thread after a knowledge-base change and swaps it in when ready; requests
    keep using the old one meanwhile. Changes that arrive during a rebuild are folded into one more rebuild."""

    def __init__(self, get_current: Callable[[], Router | None], set_current: Callable[[Router], None],
                 settings: Settings):
        import threading

        self._get, self._set, self._settings = get_current, set_current, settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self.status: dict = {"state": "idle", "kb_version": None, "error": None, "started_at": None,
                             "finished_at": None, "rebuilds": 0}

    def request(self, kb_version: str) -> dict:
        import threading

        with self._lock:
            self.status["kb_version"] = kb_version
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                self.status["state"] = "building (another change queued)"
                return dict(self.status)
            self._thread = threading.Thread(target=self._run, name="router-rebuild", daemon=True)
            self.status.update(state="building", error=None, started_at=_now_iso(), finished_at=None)
            self._thread.start()
            return dict(self.status)

    def _run(self) -> None:
        while True:
            current = self._get()
            try:
                if current is None:
                    raise RuntimeError("the router has not finished loading; the change applies when it does")
                fresh = rebuild_router(current, self._settings, progress=log.info)
                self._set(fresh)
                with self._lock:
                    self.status.update(state="ready", finished_at=_now_iso(), rebuilds=self.status["rebuilds"] + 1)
            except Exception as exc:  # the old router keeps serving; the failure is reported, not raised
                log.exception("router rebuild failed")
                with self._lock:
                    self.status.update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now_iso())
            with self._lock:
                if not self._again:
                    return
                self._again = False
                self.status.update(state="building", started_at=_now_iso(), finished_at=None)

    def wait(self, timeout: float | None = None) -> dict:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return dict(self.status)


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
