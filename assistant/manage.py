"""The Rasa assistant from the main venv: generate its vocabulary, train, validate, test and serve it.

Rasa Open Source 3.6.21 needs Python < 3.11 and pins old pydantic/SQLAlchemy/numpy, so it lives in its own venv
(`.venv-rasa`, made by scripts/setup_assistant.sh) and runs as its own process on 127.0.0.1; everything here shells
out to that venv. Custom actions are served by the app (`/api/v1/assistant/webhook`); the endpoints file Rasa gets
is written per service URL, so the app can run on any port.

`start_rasa` and `wait_until_ready` are what `hotline serve` and the end-to-end tests call.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
import yaml

from assistant.generate import generated_dir, write_generated
from hotline.core.config import REPO_ROOT, Settings, get_settings
from hotline.core.secrets import webhook_token_for
from knowledge_base.loaders import DataFileError

cli = typer.Typer(help="The Rasa assistant: generate its dictionaries from the KB, train, validate, test, serve.",
                  no_args_is_help=True)

RASA_VERSION = "3.6.21"
RASA_VENV = REPO_ROOT / ".venv-rasa"
TRAINING_DATA = REPO_ROOT / "training_data" / "assistant"
# The folders rasa trains on; training_data/assistant/tests holds test stories, which must stay out of training.
TRAINING_FOLDERS = ("nlu", "core")
TEST_STORIES = TRAINING_DATA / "tests"
HELDOUT_DATA = REPO_ROOT / "training_data" / "assistant_heldout"
MODEL_NAME = "assistant"
WEBHOOK_PATH = "/api/v1/assistant/webhook"


class RasaNotInstalled(RuntimeError):
    pass


def rasa_executable() -> Path:
    executable = RASA_VENV / "bin" / "rasa"
    if not executable.exists():
        raise RasaNotInstalled(f"the Rasa venv is missing ({executable} not found): run scripts/setup_assistant.sh")
    return executable


def assistant_cache(settings: Settings) -> Path:
    return settings.cache_dir / "assistant"


def model_file(settings: Settings) -> Path:
    return assistant_cache(settings) / "models" / f"{MODEL_NAME}.tar.gz"


def why_rasa_cannot_run(settings: Settings) -> str | None:
    """None when the Rasa venv is installed and a trained model exists; otherwise what is missing."""
    try:
        rasa_executable()
    except RasaNotInstalled as exc:
        return str(exc)
    if not model_file(settings).exists():
        return (f"no trained assistant at {model_file(settings)}: run `hotline assistant train` "
                "(or scripts/setup_assistant.sh)")
    return None


def rasa_env(settings: Settings) -> dict[str, str]:
    """Rasa's environment: no telemetry, and a private HOME and TMPDIR so it writes ~/.config/rasa, ~/.keras,
    matplotlib's cache and jieba's cache under the cache folder, not into the user's home."""
    cache = assistant_cache(settings)
    home, tmp = cache / "home", cache / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "HOME": str(home), "TMPDIR": str(tmp), "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
        "RASA_TELEMETRY_ENABLED": "false", "RASA_CACHE_DIRECTORY": str(cache / "train-cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2", "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "PATH": f"{RASA_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # config.yml names our own components by module path (rasa_components.…), found from the project folder.
        "PYTHONPATH": str(settings.assistant_dir),
    })
    return env


def _run_rasa(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a rasa subcommand in the assistant folder (config.yml's dictionary path is relative to it)."""
    command = [str(rasa_executable()), *args]
    return subprocess.run(command, cwd=settings.assistant_dir, env=rasa_env(settings), check=check)


def training_paths(settings: Settings) -> list[Path]:
    return [*(TRAINING_DATA / folder for folder in TRAINING_FOLDERS), generated_dir(settings)]


def training_inputs_hash(settings: Settings) -> str:
    """Everything a trained model depends on: config, domain, training data, generated vocabulary, Rasa's version."""
    digest = hashlib.sha256(RASA_VERSION.encode())
    files = [settings.assistant_dir / "config.yml", settings.assistant_dir / "domain.yml",
             *sorted((settings.assistant_dir / "rasa_components").glob("*.py"))]
    for folder in training_paths(settings):
        files.extend(sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"))
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _hash_file(settings: Settings) -> Path:
    return model_file(settings).with_suffix("").with_suffix(".inputs")


def model_is_current(settings: Settings) -> bool:
    hash_file = _hash_file(settings)
    return model_file(settings).exists() and hash_file.exists() and \
        hash_file.read_text().strip() == training_inputs_hash(settings)


def generate(settings: Settings) -> dict:
    return write_generated(settings)


def train(settings: Settings, *, force: bool = False) -> bool:
    """Train into the cache unless the model is current. Returns True when it trained."""
    rasa_executable()
    generate(settings)      # rewrites only what the knowledge base changed; then the hash below sees it
    if not force and model_is_current(settings):
        return False
    inputs = training_inputs_hash(settings)
    target = model_file(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    # --force: rasa's own fingerprint does not see the jieba dictionary; our hash above decides instead.
    _run_rasa(settings, "train", "--config", "config.yml", "--domain", "domain.yml",
              "--data", *map(str, training_paths(settings)), "--out", str(target.parent),
              "--fixed-model-name", MODEL_NAME, "--force", "--num-threads", "2")
    _hash_file(settings).write_text(inputs + "\n")
    return True


# Responses the custom actions send (dispatcher.utter_message(response=…)): `rasa data validate` only looks at
# stories and rules, so it reports them as unused, like the form's utter_ask_* questions.
ACTION_RESPONSES = ("utter_ask_order_number", "utter_ask_phone_last4", "utter_order_not_found", "utter_service_busy",
                    "utter_phone_needed", "utter_login_required")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WARNING = re.compile(r"UserWarning: (.*?)(?=\n\S+\.py:\d+: |\n\d{4}-\d\d-\d\d |\Z)", re.S)


@dataclass
class ValidationResult:
    returncode: int                 # rasa's own exit code
    warnings: list[str]             # every warning rasa printed
    unexpected: list[str]           # the ones that are not known to be harmless

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.unexpected


def expected_warnings(settings: Settings) -> list[re.Pattern]:
    """Warnings `rasa data validate` always prints for a correct project like this one:
    - Rasa 3.6 merges the retrieval intent `faq` from the NLU data into the domain that already lists it;
    - responses used by forms (utter_ask_<slot>) and by custom actions appear in no story or rule."""
    domain = yaml.safe_load((settings.assistant_dir / "domain.yml").read_text(encoding="utf-8"))
    form_slots = {slot for form in (domain.get("forms") or {}).values() for slot in form.get("required_slots", [])}
    unused_ok = sorted({f"utter_ask_{slot}" for slot in form_slots} | set(ACTION_RESPONSES))
    return [re.compile(r"The following duplicated intents have been found across multiple domain files: faq\b"),
            re.compile(r"The utterance '(?:" + "|".join(map(re.escape, unused_ok)) + r")' is not used in any story")]


def validate(settings: Settings) -> ValidationResult:
    """`rasa data validate`; a warning fails the validation unless it is one of expected_warnings()."""
    rasa_executable()
    generate(settings)
    command = [str(rasa_executable()), "data", "validate", "--config", "config.yml", "--domain", "domain.yml",
               "--data", *map(str, training_paths(settings))]
    run = subprocess.run(command, cwd=settings.assistant_dir, env=rasa_env(settings), capture_output=True, text=True)
    output = ANSI.sub("", run.stdout + "\n" + run.stderr)
    warnings = [" ".join(w.split()) for w in WARNING.findall(output)]
    allowed = expected_warnings(settings)
    unexpected = [w for w in warnings if not any(p.search(w) for p in allowed)]
    if run.returncode != 0:
        unexpected.append(output[-3000:])
    return ValidationResult(run.returncode, warnings, unexpected)


def test_stories(settings: Settings, *, out: Path, check: bool = True) -> subprocess.CompletedProcess:
    return _run_rasa(settings, "test", "core", "--model", str(model_file(settings)), "--stories", str(TEST_STORIES),
                     "--out", str(out), "--fail-on-prediction-errors", "--no-plot", check=check)


def write_endpoints(settings: Settings, service_url: str) -> Path:
    """An endpoints file whose action endpoint is the app at `service_url` (one file per URL, in the cache)."""
    url = service_url.rstrip("/") + WEBHOOK_PATH
    path = assistant_cache(settings) / f"endpoints-{hashlib.sha256(url.encode()).hexdigest()[:12]}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    template = (settings.assistant_dir / "endpoints.yml").read_text(encoding="utf-8")
    default = "http://127.0.0.1:8000" + WEBHOOK_PATH
    if default not in template:
        raise RuntimeError(f"{settings.assistant_dir / 'endpoints.yml'} must name the action endpoint {default}")
    endpoints = yaml.safe_load(template.replace(default, url))
    endpoints["action_endpoint"]["token"] = webhook_token_for(settings)   # the app's webhook refuses calls without it
    path.write_text(yaml.safe_dump(endpoints, allow_unicode=True, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def start_rasa(settings: Settings, *, port: int = 5005, service_url: str | None = None,
               log_file: Path | None = None) -> subprocess.Popen:
    """Start `rasa run` on 127.0.0.1:`port` with the trained model and the action endpoint of `service_url`.

    The server takes 60–70 s to load (TensorFlow builds its graphs): call wait_until_ready before sending traffic.
    The caller owns the process (terminate() it); its output goes to `log_file` (default: in the cache).
    """
    executable = rasa_executable()
    model = model_file(settings)
    if not model.exists():
        raise FileNotFoundError(f"no trained assistant at {model}: run `hotline assistant train` "
                                "(or scripts/setup_assistant.sh)")
    endpoints = write_endpoints(settings, service_url or settings.service_url)
    log_file = log_file or assistant_cache(settings) / f"rasa-{port}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [str(executable), "run", "--model", str(model), "--endpoints", str(endpoints),
               "--credentials", str(settings.assistant_dir / "credentials.yml"), "--interface", "127.0.0.1",
               "--port", str(port)]
    with log_file.open("ab") as log:
        return subprocess.Popen(command, cwd=settings.assistant_dir, env=rasa_env(settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_ready(url: str, timeout: float = 180.0, *, process: subprocess.Popen | None = None) -> None:
    """Wait until the Rasa server at `url` answers (its model is loaded before it listens).

    Raises TimeoutError after `timeout` seconds, or RuntimeError at once when `process` has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"rasa exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(url.rstrip("/") + "/", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"rasa at {url} not ready after {timeout:.0f} s")
        time.sleep(1.0)


def stop_process(process: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """Stop a server we started (Rasa, an app under uvicorn): terminate, and kill it if it has not exited in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- the command line --------------------------------------------------------------------------------------------

def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@cli.command("generate")
def generate_command() -> None:
    """Write the jieba dictionary and the lookup tables/regexes/synonyms from the knowledge base."""
    try:
        manifest = generate(get_settings())
    except (DataFileError, ValueError) as exc:
        _fail(str(exc))
    counts = ", ".join(f"{name} {c['values']} values/{c['aliases']} words" for name, c in manifest["entities"].items())
    typer.echo(f"assistant vocabulary generated: {manifest['jieba_words']} jieba words; {counts}")


@cli.command("train")
def train_command(force: Annotated[bool, typer.Option(help="train even when nothing changed")] = False) -> None:
    """Train the Rasa model into the cache (skipped when config, domain, data and vocabulary are unchanged)."""
    settings = get_settings()
    try:
        trained = train(settings, force=force)
    except RasaNotInstalled as exc:
        _fail(str(exc))
    except subprocess.CalledProcessError as exc:
        _fail(f"rasa train failed with exit code {exc.returncode}")
    typer.echo(f"{'trained' if trained else 'model is current'}: {model_file(settings)}")


@cli.command("validate")
def validate_command() -> None:
    """`rasa data validate` on the domain and training data; any warning not known to be harmless fails."""
    try:
        result = validate(get_settings())
    except RasaNotInstalled as exc:
        _fail(str(exc))
    for warning in result.warnings:
        typer.echo(f"{'ok (expected)' if warning not in result.unexpected else 'PROBLEM'}: {warning}", err=True)
    if not result.ok:
        _fail(f"rasa data validate: {len(result.unexpected)} problem(s)")
    typer.echo(f"rasa data validate: clean ({len(result.warnings)} expected warnings)")


@cli.command("test")
def test_command(out: Annotated[Path, typer.Option(help="where rasa writes its reports")] = Path("out/assistant-test")
                 ) -> None:
    """Run the test stories (training_data/assistant/tests) against the trained model."""
    settings = get_settings()
    try:
        rasa_executable()
        if not model_file(settings).exists():
            _fail(f"no trained assistant at {model_file(settings)}: run `hotline assistant train`")
        result = test_stories(settings, out=out.resolve(), check=False)
    except RasaNotInstalled as exc:
        _fail(str(exc))
    raise typer.Exit(result.returncode)


@cli.command("serve")
def serve_command(
    port: Annotated[int, typer.Option(help="Rasa's port on 127.0.0.1")] = 5005,
    service_url: Annotated[str | None, typer.Option(help="the app's base URL (custom actions live there)")] = None,
) -> None:
    """Run the Rasa server in the foreground (REST channel on 127.0.0.1), actions served by the app."""
    settings = get_settings()
    try:
        process = start_rasa(settings, port=port, service_url=service_url,
                             log_file=assistant_cache(settings) / f"rasa-{port}.log")
    except (RasaNotInstalled, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"rasa starting on 127.0.0.1:{port} (log: {assistant_cache(settings) / f'rasa-{port}.log'})", err=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=300, process=process)
        typer.echo(f"rasa ready on http://127.0.0.1:{port}", err=True)
        sys.exit(process.wait())
    except (TimeoutError, RuntimeError) as exc:
        process.terminate()
        _fail(str(exc))
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)
