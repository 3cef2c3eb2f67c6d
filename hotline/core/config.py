"""Settings from the environment / .env (prefix HOTLINE_), one place for every tunable."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]   # hotline/core/config.py → the repository
DEFAULT_DATA_ROOT = REPO_ROOT / "knowledge_base" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", env_file=".env", extra="ignore")

    city: str = "changsha"
    # The city's identity, used in standard addresses and to tell places of other cities apart.
    city_name: str = "长沙市"
    province_name: str = "湖南省"
    city_adcode: str = "430100"
    data_root: Path = DEFAULT_DATA_ROOT
    # Converted models, FAISS indexes and other build artefacts; never committed.
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "hotline")
    # Work orders live here. Embedded default: SQLite (WAL) in the user's data folder. PostgreSQL:
    # HOTLINE_DATABASE_URL=postgresql+psycopg://user:password@host:5432/hotline
    # Installation state that is not a cache (the generated JWT signing key).
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "hotline")
    # Staff tokens are signed with this; unset = a key generated once into state_dir (mode 0600).
    jwt_secret: str | None = None
    database_url: str = Field(default_factory=lambda: "sqlite:///" + str(Path.home() / ".local" / "share" / "hotline" / "hotline.sqlite3"))
    # auto = e5, falling back to USE, then char n-gram TF-IDF (the choice is reported at start-up).
    embedder: Literal["auto", "e5", "use", "tfidf"] = "auto"
    torch_threads: int = 2
    # e5 with dynamic int8 Linear layers: 2.2x faster on 2 cores, same dev-set accuracy as fp32 (BENCHMARKS.md).
    e5_int8: bool = True
    # Tokens of a complaint e5 reads (list entries keep 256). The matter is in the title and the first sentences:
    # on the 639 real development messages 96 tokens routed as well as 256 (kind 0.543 against 0.5415) in 21%
    # less time; 64 lost 0.003 (BENCHMARKS.md, "Routing speed").
    e5_max_query_tokens: int = Field(default=96, ge=16, le=512)
    # The service routes concurrent requests together (one routing call, one embedding call per model): the first
    # request waits at most this long (not while batches are running: what arrives meanwhile joins the next one)
    # for others, up to embed_max_batch complaints. embed_max_batch 1 = no batching (each request alone).
    # The CLI's batch routing is not affected.
    embed_batch_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    embed_max_batch: int = Field(default=32, ge=1, le=1024)
    # Routing requests (intake, /route, Open311) run in their own worker threads, at most this many at once, so
    # reads and writes keep the general thread pool (anyio's 40) to themselves however many complaints queue.
    routing_threads: int = Field(default=32, ge=1, le=256)
    # Threads per embedding model in the service (torch for e5, BLAS for USE), instead of torch_threads. With
    # routing batched, an e5 batch and a USE batch run side by side; one thread each keeps 2 cores busy without
    # oversubscribing them (2 each spent 96 ms of CPU per order against 61 ms; BENCHMARKS.md).
    routing_model_threads: int = Field(default=1, ge=1, le=64)

    # Dispatch policy: decision thresholds on the calibrated confidence.
    # Auto-dispatch only when the calibrated probability that the unit is right is at least this.
    auto_threshold: float = 0.95
    # Two kinds of unit both this likely (and close) = 职责交叉: send to joint review.
    cross_duty_min: float = 0.35
    top_k: int = 5
    # Intake dispatches "auto" decisions at once; off = every order waits for an agent to confirm.
    auto_dispatch: bool = True
    # e5 and USE scores averaged beat either alone (offline-stack.md); auto uses both when available.
    ensemble: bool = True
    # A re-dispatch correction steers repeats of its complaint for this many days, then expires (it can be
    # removed earlier: `hotline corrections remove ID`, DELETE /api/v1/route/corrections/{id}).
    correction_lifetime_days: int = Field(default=180, ge=1)

    # Same-event detection (orders/similar.py): open orders created within this many days are compared with a new
    # complaint; at most same_event_limit proposals are shown. A week covers how long one outage, a blocked road or
    # a night of construction noise keeps people calling; older events are new events (or a repeat, counted apart).
    same_event_window_days: int = Field(default=7, ge=1, le=90)
    same_event_limit: int = Field(default=5, ge=1, le=50)

    # A model trained on the city's history (`hotline train`); unset = the one `hotline model use DIR` chose, if any.
    model_dir: Path | None = None

    max_text_chars: int = 20_000
    # Largest request body the API reads (bytes); larger ones, chunked or not, are refused with 413 before parsing.
    # Some endpoints keep a smaller limit of their own (web chat 16 KB, WeChat 64 KB); the assistant webhook 4 MB.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # WeChat official account (公众号). Token alone enables the callback; AES keys enable safe mode; AppId and
    # AppSecret let replies go out through the customer-service message API.
    wechat_token: str | None = None
    wechat_aes_key: str | None = None
    wechat_aes_key_previous: str | None = None     # still accepted while WeChat rotates the key
    wechat_app_id: str | None = None
    wechat_app_secret: str | None = None
    # A callback whose signed `timestamp` is further than this from the server's clock is refused (a captured
    # signed URL cannot be replayed later); 0 = no check.
    wechat_timestamp_window_s: int = Field(default=300, ge=0)
    # Citizen-facing endpoints: requests per client address per minute.
    public_rate_limit_per_minute: int = 30
    # Order lookups one API key may relay per minute on behalf of citizens (X-On-Behalf-Of; keys with the
    # `lookup:on_behalf` scope only), whatever the number of distinct users it names.
    relay_lookups_per_key_per_minute: int = 300
    # Wrong phone digits for one order number within an hour, from anyone, after which that order's status
    # lookups pause for the rest of the hour: spreading guesses over many addresses or users buys nothing
    # (review M2; the citizen can still ask the hotline or see "my orders" in WeChat).
    lookup_failures_per_order_per_hour: int = Field(default=10, ge=1)
    # Proxies whose X-Forwarded-For is believed (addresses or CIDR ranges); empty = the socket's address decides.
    trusted_proxies: list[str] = []
    # Host names the service answers to (the Host header; others get 400, so no absolute URL is built from a forged
    # one). localhost, 127.0.0.1, ::1, testserver and the hosts of public_base_url and service_url always are.
    # A JSON list, e.g. HOTLINE_ALLOWED_HOSTS='["12345.changsha.gov.cn", "*.hotline.internal"]'; ["*"] = any.
    allowed_hosts: list[str] = []
    # The address clients reach the service at (e.g. https://12345.changsha.gov.cn); Open311 discovery publishes
    # it. Unset = the request's own (allowed) host.
    public_base_url: str | None = None
    # Staff login: after this many failures for one username or one client address within the window, that
    # username / address is locked out for login_lockout_s (429 with Retry-After).
    login_max_failures: int = 5
    login_failure_window_s: float = 900.0
    login_lockout_s: float = 900.0

    # GET /metrics without credentials (a scraper on the internal network); false = an API key with the
    # `metrics:read` scope or an admin's token is needed.
    metrics_public: bool = True

    # The Rasa assistant (its own Python 3.10 venv and process, on loopback behind the app).
    rasa_url: str = "http://127.0.0.1:5005"
    # false (`hotline serve --no-assistant`): the chat and WeChat never relay to rasa_url; WeChat files directly.
    assistant_enabled: bool = True
    # The app's own base URL, for the assistant's custom actions (they reach the service over HTTP only).
    service_url: str = "http://127.0.0.1:8000"
    assistant_timeout_s: float = 8.0
    # The API key the assistant's actions use; unset = one generated into state_dir at start-up.
    assistant_api_key: str | None = None
    # Where the assistant project lives (domain, config, trained models).
    assistant_dir: Path = REPO_ROOT / "assistant"

    # Open311 GeoReport v2: the jurisdiction this endpoint serves.
    open311_jurisdiction_id: str = "changsha.gov.cn"
    # What GET requests.json / requests/{id}.json publish: "open311" = only requests filed through Open311,
    # "all" = every top-level order (coordinates only for Open311's), "none" = nothing. Text is always masked.
    open311_publish: Literal["open311", "all", "none"] = "open311"

    # Department webhooks (transactional outbox): delivery attempts and backoff.
    webhook_max_attempts: int = 8
    webhook_backoff_base_s: float = 5.0
    webhook_timeout_s: float = 5.0
    # The app delivers due webhooks every this many seconds (0 = no worker in the app; run `hotline outbox deliver`).
    outbox_poll_s: float = 2.0
    # Reports generated by the app's background worker for the period just ended (orders/reports.due_reports):
    # any of "day,week,month,quarter"; empty = none. They are made at or after this hour (city time).
    report_schedule: str = ""
    report_hour: int = Field(default=7, ge=0, le=23)

    @property
    def city_dir(self) -> Path:
        return self.data_root / self.city

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.cache_dir / "index" / self.city


@lru_cache
def get_settings() -> Settings:
    return Settings()
