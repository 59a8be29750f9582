"""The `bilan view` web app (Flask): the grid of cases x systems, a page per case, labelling, all read-only but labels.

Safe by default: every template autoescaped (model text is hostile) and shown through report.reveal; a CSP with
default-src 'self' and no inline script; every POST carries the per-server token (compared in constant time);
requests for another Host than the server's are refused (DNS rebinding); with a passphrase, nothing is served
before it is given.
"""
from __future__ import annotations

import contextlib
import hmac
import secrets
import socket
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request
from werkzeug.serving import make_server

from ..analyze import criterion_kind, outcome
from ..errors import InputError, Problem
from ..report import font_bytes, language_name, reveal
from . import data
from .labels import answer_entry, blinded_queue, check_reviewer, given, progress, save_label

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SESSION_COOKIE = "bilan_session"
QUEUE_SIZE = 20


class _App(Flask):
    def select_jinja_autoescape(self, filename: str | None) -> bool:
        return True             # every template, whatever its extension: model text is hostile


class State:
    """What the app serves: the runs, read once, and the secrets of this server."""

    def __init__(self, runs: dict[str, data.Run], token: str, passphrase: str | None, hosts: Iterable[str] | None):
        self.runs, self.token, self.passphrase = runs, token, passphrase
        self.session = secrets.token_urlsafe(32)
        self.hosts = None if hosts is None else set(hosts)
        self.queues: dict[tuple, tuple[list[dict], dict]] = {}

    @cached_property
    def views(self) -> dict[str, data.CaseView]:
        """The cases across the runs, built on first use."""
        return data.case_views(self.runs)

    @cached_property
    def options(self) -> dict[str, list[tuple[str, str]]]:
        """Each filter's choices."""
        return data.options(self.runs)

    def queue(self, run: str, seed: int, size: int | None) -> tuple[list[dict], dict]:
        """A blinded queue, computed once per (run, seed, size)."""
        if (run, seed, size) not in self.queues:
            self.queues[run, seed, size] = blinded_queue(self.runs[run], seed, size)
        return self.queues[run, seed, size]


def _local(target: str | None) -> str:
    """A redirect target that stays on this server (a path, never another origin)."""
    return target if target and target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        abort(400)


def create_app(runs: dict[str, data.Run], token: str, passphrase: str | None = None,
               hosts: Iterable[str] | None = ("127.0.0.1", "localhost", "::1")) -> Flask:
    """The app over these runs; POSTs need `token`; with `passphrase`, every page needs it first; `hosts` are the
    Host header values it answers (with or without the port), others get 400; None answers any (with a passphrase)."""
    if hosts is None and not passphrase:
        raise ValueError("answering any Host needs a passphrase")
    app = _App(__name__)
    state = State(runs, token, passphrase, hosts)
    app.extensions["bilan"] = state
    app.jinja_env.filters["reveal"] = reveal
    app.jinja_env.globals.update(language_name=language_name, direction=data.message_direction, token=token,
                                 criterion_kind=criterion_kind, outcome=outcome)
    _guards(app, state)
    _pages(app, state)
    _writes(app, state)
    return app


def _guards(app: Flask, state: State) -> None:
    @app.before_request
    def guard() -> Any:
        if state.hosts is not None and request.host.rsplit(":", 1)[0].strip("[]") not in state.hosts \
                and request.host not in state.hosts:
            abort(400)
        if request.method == "POST":
            sent = request.headers.get("X-Bilan-Token") or request.form.get("token") or ""
            if not hmac.compare_digest(sent.encode("utf-8"), state.token.encode("utf-8")):
                abort(403)
        cookie = request.cookies.get(SESSION_COOKIE, "").encode("utf-8")
        if state.passphrase and request.endpoint not in ("login", "static") \
                and not hmac.compare_digest(cookie, state.session.encode("utf-8")):
            return redirect("/login")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST" and state.passphrase and hmac.compare_digest(
                request.form.get("passphrase", "").encode("utf-8"), state.passphrase.encode("utf-8")):
            response = redirect("/")
            response.set_cookie(SESSION_COOKIE, state.session, httponly=True, samesite="Strict")
            return response
        return render_template("login.html.j2",
                               failed=request.method == "POST"), 200 if request.method == "GET" else 403

    @app.errorhandler(InputError)
    def unreadable(err: InputError) -> Any:       # a label file edited by hand into something that is not one
        return render_template("problem.html.j2", problems=[str(p) for p in err.problems]), 500

    @app.route("/favicon.ico")
    def favicon() -> Any:
        return Response(status=204)

    @app.route("/font/<name>.woff2")
    def font(name: str) -> Any:
        if name not in ("arabic", "tifinagh"):
            abort(404)
        return Response(font_bytes(name), mimetype="font/woff2")


def _wanted() -> dict[str, str]:
    return {k: request.args.get(k, "").strip() for k in data.FILTERS}


def _pages(app: Flask, state: State) -> None:
    @app.route("/")
    def index() -> Any:
        wanted = _wanted()
        labels = data.label_index(state.runs) if wanted["disagreement"] == "labels" else {}
        shown = [v for v in state.views.values() if data.matches(v, wanted, labels)]
        return render_template("index.html.j2", runs=state.runs,
                               figures={n: data.figures(r) for n, r in state.runs.items()},
                               progress={n: progress(r) for n, r in state.runs.items()},
                               systems=data.systems(state.runs), cases=shown, total=len(state.views), wanted=wanted,
                               options=state.options, queue_size=QUEUE_SIZE)

    @app.route("/case/<run>/<case_id>")
    def case(run: str, case_id: str) -> Any:
        view = state.views.get(case_id)
        if run not in state.runs or view is None or state.runs[run].row_for(case_id) is None:
            abort(404)
        reviewer = request.args.get("reviewer", "").strip()
        if reviewer:
            try:
                reviewer = check_reviewer(reviewer)
            except InputError:
                abort(400)
        mine = {n: given(r, reviewer) for n, r in state.runs.items()} if reviewer else {}
        labels = data.label_index(state.runs)
        info = state.runs[run].cases.get(case_id, view.info)
        return render_template("case.html.j2", run=run, view=view, info=info, row=state.runs[run].row_for(case_id),
                               systems=data.systems(state.runs), reviewer=reviewer, mine=mine, labels=labels,
                               sha=data.answer_sha256, here=request.full_path.rstrip("?"))

    @app.route("/queue/<run>")
    def queue(run: str) -> Any:
        if run not in state.runs:
            abort(404)
        try:
            reviewer = check_reviewer(request.args.get("reviewer", ""))
        except InputError:
            return redirect("/?" + urlencode({"problem": "reviewer"}))
        seed, size = _int(request.args.get("seed"), 0), _int(request.args.get("size"), QUEUE_SIZE)   # size 0: every row
        rows, key = state.queue(run, seed, size or None)
        mine = given(state.runs[run], reviewer)
        done = [row for row in rows if _key(key, row) in mine]
        first_open = next((n for n, row in enumerate(rows) if _key(key, row) not in mine), len(rows))
        i = _int(request.args.get("i"), first_open)
        i = max(0, min(i, len(rows)))
        row = rows[i] if i < len(rows) else None
        link = lambda n: f"/queue/{run}?" + urlencode({"reviewer": reviewer, "seed": seed, "size": size, "i": n})
        return render_template("queue.html.j2", run=run, reviewer=reviewer, seed=seed, size=size, rows=rows, i=i,
                               row=row, done=len(done), current=mine.get(_key(key, row)) if row else None, link=link,
                               progress=progress(state.runs[run]))


def _key(key: dict, row: dict) -> tuple:
    entry = key["rows"][row["row_id"]]
    return (entry["target"], entry["case_id"], entry["sample"], entry["criterion"])


def _writes(app: Flask, state: State) -> None:
    @app.route("/label", methods=["POST"])
    def label() -> Any:
        form = request.form
        run = state.runs.get(form.get("run", ""))
        if run is None:
            abort(404)
        try:
            reviewer = check_reviewer(form.get("reviewer", ""))
            if form.get("row_id"):
                seed, size = _int(form.get("seed"), 0), _int(form.get("size"), QUEUE_SIZE)
                _, key = state.queue(run.name, seed, size or None)
                entry = key["rows"].get(form["row_id"])
                if entry is None:
                    abort(404)
                sheet = key["sheet"]
            else:
                entry = answer_entry(run, form.get("target", ""), form.get("case_id", ""), _int(form.get("sample"), 0),
                                     form.get("criterion", ""))
                sheet = "view"
            out = save_label(run, reviewer, dict(entry), form.get("verdict", ""), form.get("comment", "")[:4000], sheet)
        except InputError as err:
            if "application/json" in request.headers.get("Accept", ""):
                return jsonify({"saved": False, "problem": err.problems[0].message}), 400
            abort(400)
        if "application/json" in request.headers.get("Accept", ""):
            return jsonify({"saved": True, "file": out.name})
        return redirect(_local(form.get("next")), code=303)


LOOPBACK = ("127.0.0.1", "localhost", "::1")      # addresses to listen on, and Host names answered there


class Served(NamedTuple):
    """A server ready to serve, its link, and the warning to show first when it listens beyond loopback."""

    server: Any
    link: str
    warning: str | None

    def serve(self) -> int:
        """Serve until interrupted (Ctrl-C), then close; returns the exit status."""
        with contextlib.suppress(KeyboardInterrupt):
            self.server.serve_forever()
        self.server.server_close()
        return 0


def prepare(paths: list[Path], host: str, port: int, passphrase: str | None, passphrase_env: str | None) -> Served:
    """The server (not yet serving) over these runs. InputError for a path that is not a run, or an address other
    than loopback without a passphrase."""
    runs = data.read_runs(paths)
    exposed = host not in LOOPBACK
    if passphrase_env and not passphrase:
        raise InputError([Problem("--passphrase-env", 0, 0,
                                  f"environment variable {passphrase_env} is empty or not set; "
                                  "expected it to hold the shared passphrase")])
    if exposed and not passphrase:
        raise InputError([Problem("--host", 0, 0,
                                  f"{host} is not a loopback address; expected --passphrase-env VAR too "
                                  "(a shared passphrase every reader must give), or no --host to stay on 127.0.0.1")])
    # Beyond loopback any Host is answered: the passphrase guards it, and its cookie is never sent to a rebound name.
    app = create_app(runs, secrets.token_urlsafe(32), passphrase, None if exposed else LOOPBACK)
    try:        # bound here, not by werkzeug, which exits the process on a busy port
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise InputError([Problem("--host", 0, 0,
                                  f"cannot listen on {host} port {port}: {exc.strerror or exc}; expected an address "
                                  "of this computer and a free port (or none: a free one is chosen)")]) from None
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    sock.close()            # the server holds its own duplicate of the socket
    shown = f"[{host}]" if ":" in host else host
    link = f"http://{shown}:{server.port}/"
    warning = (f"warning: serving on {host}, not only this computer: anyone who can reach it and knows the passphrase "
               "can read the answers and write labels") if exposed else None
    return Served(server, link, warning)
