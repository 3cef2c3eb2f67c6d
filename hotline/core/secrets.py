"""The service's shared secrets with its own clients: installation API keys (the assistant's, generated once into the
state folder, mode 0600) and the token Rasa sends with every action call, derived from the assistant's key.

Here, at the bottom, because both sides need them: the app provisions and checks them (`api`), and the assistant's
manager writes the token into Rasa's endpoints file (`assistant.manage`) without importing the app."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "hlk_"
ASSISTANT_KEY_NAME = "assistant"


def installation_key(configured: str | None, state_dir: Path, name: str) -> str:
    """A clear API key for one of the service's own clients: the setting, or one generated once (file mode 0600)."""
    if configured:
        return configured
    path = state_dir / f"{name}_api_key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(KEY_PREFIX + secrets.token_urlsafe(32))
    return path.read_text().strip()


def webhook_token(api_key: str) -> str:
    """The token Rasa must send with every action call (endpoints.yml `token:`), derived from the assistant's key."""
    return hmac.new(api_key.encode(), b"hotline assistant action webhook", hashlib.sha256).hexdigest()


def webhook_token_for(settings) -> str:
    """The token of the app run with `settings`: derived from the key it provisions (the setting, or the key file in
    state_dir). Whoever writes Rasa's endpoints file puts it under action_endpoint.token."""
    return webhook_token(installation_key(settings.assistant_api_key, settings.state_dir, ASSISTANT_KEY_NAME))
