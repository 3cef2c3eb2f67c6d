"""The HTTP service. `app.py` composes it; `deps.py` holds what routes depend on (settings, sessions, the router,
the caller); `routes/` the endpoints by noun; `channels/` where citizens' messages come in (web chat, WeChat,
Open311, the assistant client); `auth/` API keys, staff accounts and their tables; `schemas.py` shared request
shapes; the middleware (`body_limit`, `input_guard`, `trusted_host`, `security_headers`, `observability`,
`ratelimit`) and the routing worker pool (`routing_pool.py`) sit beside them."""
import hotline.core.runtime  # noqa: F401  (thread settings before numpy/torch/faiss load)
