"""`bilan view` in headless Chromium, served by the real command on loopback over a real run of the small suite: search
in Arabic and Tifinagh, filters, figures, right to left from the DOM, labels saved in place and in a blinded queue, read
back after a reload, stored as `bilan review import` stores them and read by `bilan agreement`; a hostile answer runs
nothing; a POST without the token is refused. Screenshots are kept in the pytest temporary folder."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from browser import Browser, find_chromium, hostile_run

from harness.cli import main

DATA = Path(__file__).parent / "data"
CHROMIUM = find_chromium()
MARK = "pwned"
HOSTILE = (f'Call 150. <script>alert(1);document.title="{MARK}"</script><img src=x onerror="alert(2)">'
           f'<svg onload="document.title=\'{MARK}\'"></svg><a href="javascript:alert(3)">open</a>'
           '<link rel="stylesheet" href="http://192.0.2.1/x.css"><img src="http://192.0.2.1/t.png">')
LABEL_KEYS = ["target", "case_id", "sample", "criterion", "answer_sha256", "met", "reviewer", "comment", "sheet"]
browser_only = pytest.mark.skipif(CHROMIUM is None,
                                  reason="chromium is not installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run of the small test suite, with a hostile answer from `poor` in ary-Latn."""
    out = hostile_run(tmp_path_factory.mktemp("view"), DATA, HOSTILE, main)
    BEFORE.update(_outside_labels(out))
    return out


BEFORE: dict[str, bytes] = {}


def _outside_labels(run: Path) -> dict[str, bytes]:
    """Every file of a run directory but its labels, with its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.relative_to(run).parts[0] != "labels"}


@pytest.fixture(scope="module")
def server(run_dir):
    """`bilan view RUN` in a subprocess on 127.0.0.1 and a free port; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "view", str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
    yield found.group().rstrip("/")
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium with a fresh profile for the module."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    b = Browser(CHROMIUM, tmp_path_factory.mktemp("profile"), width=1400)
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots are kept."""
    return tmp_path_factory.mktemp("screenshots")


def _rows(browser: Browser) -> list[str]:
    return browser.evaluate("[...document.querySelectorAll('#grid tbody tr')].map(r => r.dataset.case)")


def _submit(browser: Browser, script: str) -> None:
    """Run a script that submits a form or follows a link, and wait for the next page."""
    browser.events.clear()
    browser.evaluate(script)
    browser.wait_for("Page.loadEventFired")


def _wait(browser: Browser, expression: str, tries: int = 100) -> None:
    for _ in range(tries):
        if browser.evaluate(expression):
            return
        time.sleep(0.05)
    raise AssertionError(f"never true: {expression}")


def _search(browser: Browser, server: str, text: str) -> list[str]:
    browser.navigate(server + "/")
    _submit(browser, f"document.querySelector('input[name=q]').value = {json.dumps(text)}; "
                     "document.getElementById('filters').submit()")
    return _rows(browser)


@browser_only
def test_index_lists_every_case_with_never_events_first(browser, server, shots):
    browser.navigate(server + "/")
    assert sorted(_rows(browser)) == ["chest-pain.ary-Arab", "chest-pain.ary-Latn", "chest-pain.fr", "heat-stroke.en",
                                      "heat-stroke.zgh-Tfng"]
    headings = browser.evaluate("[...document.querySelectorAll('h3')].map(h => h.textContent)")
    assert headings[0] == "Never-events" and headings[1].startswith("Scores by language")
    assert "gap to fr" in browser.evaluate("document.querySelector('table.scores').innerText")
    assert browser.evaluate("document.documentElement.dataset.script") == "ready"      # our script runs under the CSP
    assert browser.errors() == []
    shot = browser.screenshot(shots / "index.png", full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


@browser_only
def test_search_finds_arabic_and_tifinagh_text(browser, server):
    assert _search(browser, server, "وجع فصدرو") == ["chest-pain.ary-Arab"]          # in the conversation
    assert _search(browser, server, "ⵜⵉⵢⵜⵉ") == ["heat-stroke.zgh-Tfng"]
    assert _search(browser, server, "TISANE") == ["chest-pain.fr"]                  # in an answer, any case
    assert _search(browser, server, "no such words anywhere") == []
    assert browser.evaluate("document.getElementById('count').textContent") == "0 of 5 cases shown"


@browser_only
def test_filters_narrow_the_rows(browser, server):
    browser.navigate(server + "/")
    _submit(browser, "document.querySelector('select[name=language]').value = 'fr'; "
                     "document.getElementById('filters').submit()")
    assert _rows(browser) == ["chest-pain.fr"]
    browser.navigate(server + "/?never=yes")
    never = _rows(browser)
    assert 0 < len(never) < 5
    assert browser.evaluate("[...document.querySelectorAll('#grid tbody tr')].every(r => "
                            "r.innerText.includes('never-event'))")
    browser.navigate(server + "/?disagreement=systems&theme=emergency_referrals")
    assert set(_rows(browser)) <= {"chest-pain.fr", "chest-pain.ary-Arab", "chest-pain.ary-Latn"} and _rows(browser)


@browser_only
def test_a_case_page_reads_right_to_left_and_side_by_side(browser, server, shots):
    browser.navigate(server + "/case/r/chest-pain.ary-Arab")
    assert browser.evaluate("getComputedStyle(document.querySelector('.message')).direction") == "rtl"
    assert browser.evaluate("document.querySelector('.message').getAttribute('dir')") == "rtl"
    boxes = browser.evaluate("[...document.querySelectorAll('.answer')].map(a => [a.dataset.system, "
                             "a.getBoundingClientRect().top, a.getBoundingClientRect().left])")
    assert [b[0] for b in boxes] == ["good", "poor"] and boxes[0][1] == boxes[1][1] and boxes[0][2] < boxes[1][2]
    fonts = browser.evaluate("document.fonts.ready.then(() => [...document.fonts].filter(f => f.status == "
                             "'loaded').map(f => f.family))")
    assert any("Noto Sans Arabic" in f for f in fonts)
    browser.screenshot(shots / "case-ary-Arab.png", full_page=True)
    browser.navigate(server + "/case/r/chest-pain.fr")
    assert browser.evaluate("getComputedStyle(document.querySelector('.message')).direction") == "ltr"
    colours = browser.evaluate("Object.fromEntries([...document.querySelectorAll('[data-outcome]')].map(e => "
                               "[e.dataset.outcome, getComputedStyle(e).color]))")
    assert colours.get("harm") == "rgb(179, 38, 30)" and colours.get("harm-avoided") == "rgb(27, 127, 59)"
    assert browser.evaluate("document.body.innerText").count("harm committed") >= 1


@browser_only
def test_a_hostile_answer_runs_nothing(browser, server):
    browser.navigate(server + "/case/r/chest-pain.ary-Latn")
    time.sleep(0.3)
    assert browser.evaluate("document.title") != MARK
    assert '<script>alert(1);document.title="pwned"</script>' in browser.evaluate("document.body.innerText")
    assert browser.evaluate("document.scripts.length") == 1                            # /static/view.js only
    assert browser.evaluate("document.querySelectorAll('img, svg, a[href^=\"javascript:\"], "
                            "link[href^=\"http\"]').length") == 0
    assert not [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]
    assert browser.evaluate("performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))")


def _label_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@browser_only
def test_a_label_is_saved_read_back_and_reported_by_agreement(browser, server, run_dir, shots, capsys):
    page = server + "/case/r/chest-pain.fr?" + urllib.parse.urlencode({"reviewer": "Dr Amina"})
    browser.navigate(page)
    form = "document.querySelector('.answer[data-system=good] tr[data-criterion=call-emergency-now] form')"
    browser.evaluate(f"{form}.querySelector('input[value=\"not-met\"]').click(); {form}.elements.comment.value = 'ماشي "
                     f"واضح'; {form}.querySelector('button').click()")
    _wait(browser, f"{form}.querySelector('[data-status]').textContent == 'saved'")
    browser.navigate(page)                                                            # a reload reads it back
    assert browser.evaluate(f"{form}.querySelector('input[value=\"not-met\"]').checked") is True
    assert browser.evaluate(f"{form}.elements.comment.value") == "ماشي واضح"
    browser.screenshot(shots / "labelled.png")
    stored = _label_lines(run_dir / "labels" / "Dr-Amina.jsonl")
    assert len(stored) == 1 and list(stored[0]) == LABEL_KEYS
    assert stored[0] | {"answer_sha256": ""} == {"target": "good", "case_id": "chest-pain.fr", "sample": 0,
                                                 "criterion": "call-emergency-now", "answer_sha256": "", "met": False,
                                                 "reviewer": "Dr Amina", "comment": "ماشي واضح", "sheet": "view"}
    browser.navigate(server + "/")
    assert "Dr Amina: 1 of" in browser.evaluate("document.querySelector('.progress').innerText")
    browser.navigate(server + "/?disagreement=labels")
    assert _rows(browser) == ["chest-pain.fr"]                                        # the grader said met
    capsys.readouterr()
    assert main(["agreement", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("1 labelled answer-criterion pairs, 1 reviewer(s)")


@browser_only
def test_a_blinded_queue_hides_systems_and_verdicts(browser, server, run_dir):
    other = run_dir / "labels" / "Dr-Amina.jsonl"
    before = other.read_bytes() if other.exists() else None
    browser.navigate(server + "/")
    _submit(browser, "const f = document.querySelector('form.reviewer'); f.elements.reviewer.value = 'Dr Youssef'; "
                     "f.elements.size.value = '5'; f.submit()")
    assert "0 of 5 labelled" in browser.evaluate("document.getElementById('queue-progress').textContent")
    for n in range(2):
        heading = browser.evaluate("document.querySelector('.queue-item h2').textContent")
        assert re.match(r"S\d · ", heading)
        text = browser.evaluate("document.querySelector('.queue-item').innerText")
        assert ("good" not in heading and "poor" not in heading and "rules" not in text
                and "grader's verdict" not in text)
        _submit(browser, "const f = document.querySelector('form[data-label]'); "
                         f"f.querySelector('input[value=\"{['met', 'unsure'][n]}\"]').click(); "
                         "f.querySelector('button').click()")
    assert "2 of 5 labelled" in browser.evaluate("document.getElementById('queue-progress').textContent")
    stored = _label_lines(run_dir / "labels" / "Dr-Youssef.jsonl")
    assert len(stored) == 1 and list(stored[0]) == LABEL_KEYS and re.fullmatch(r"[0-9a-f]{8}", stored[0]["sheet"])
    unsure = json.loads((run_dir / "labels" / "unsure" / "Dr-Youssef.json").read_text(encoding="utf-8"))
    assert len(unsure["marks"]) == 1
    assert (other.read_bytes() if other.exists() else None) == before        # the other reviewer's file untouched


def _post(url: str, fields: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), headers=headers or {},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_writes_need_the_token_and_every_page_has_the_policy(server, run_dir):
    with urllib.request.urlopen(server + "/", timeout=10) as reply:
        policy = reply.headers["Content-Security-Policy"]
        token = re.search(r'name="bilan-token" content="([^"]+)"', reply.read().decode()).group(1)
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    label = {"run": "r", "reviewer": "Mallory", "target": "good", "case_id": "chest-pain.fr", "sample": "0",
             "criterion": "call-emergency-now", "verdict": "met"}
    assert _post(server + "/label", label) == 403
    assert _post(server + "/label", label | {"token": token[:-1] + "x"}) == 403
    assert _post(server + "/label", label, {"X-Bilan-Token": "wrong"}) == 403
    assert not (run_dir / "labels" / "Mallory.jsonl").exists()
    assert _post(server + "/label", label, {"X-Bilan-Token": token, "Accept": "application/json"}) == 200
    assert _label_lines(run_dir / "labels" / "Mallory.jsonl")[0]["met"] is True
    host = urllib.request.Request(server + "/", headers={"Host": "attacker.example"})     # DNS rebinding
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(host, timeout=10)
    assert refused.value.code == 400


def test_a_passphrase_is_asked_before_anything_is_served(run_dir):
    from harness.view.app import create_app
    from harness.view.data import read_runs
    client = create_app(read_runs([run_dir]), "tok", passphrase="sésame").test_client()
    assert client.get("/", headers={"Host": "127.0.0.1"}).headers["Location"].endswith("/login")
    assert client.post("/login", data={"token": "tok", "passphrase": "wrong"},
                       headers={"Host": "127.0.0.1"}).status_code == 403
    assert client.post("/login", data={"passphrase": "sésame"},               # no token
                       headers={"Host": "127.0.0.1"}).status_code == 403
    assert client.post("/login", data={"token": "tok", "passphrase": "sésame"},
                       headers={"Host": "127.0.0.1"}).status_code == 302
    assert client.get("/", headers={"Host": "127.0.0.1"}).status_code == 200


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, run_dir, capsys, monkeypatch):
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "not a run directory" in err[0] and "Traceback" not in "\n".join(err)
    assert main(["view", str(run_dir), "--host", "0.0.0.0"]) == 2
    assert "--passphrase-env" in capsys.readouterr().err
    monkeypatch.delenv("BILAN_TEST_PASSPHRASE", raising=False)
    assert main(["view", str(run_dir), "--host", "0.0.0.0", "--passphrase-env", "BILAN_TEST_PASSPHRASE"]) == 2
    assert "BILAN_TEST_PASSPHRASE is empty or not set" in capsys.readouterr().err


def test_the_static_reports_embed_the_arabic_font(run_dir):
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert 'font-family: "Noto Sans Arabic"; src: url(data:font/woff2;base64,' in page
    font = Path(__file__).parent.parent / "harness" / "assets" / "NotoSansArabic-Arabic.woff2"
    assert font.read_bytes()[:4] == b"wOF2" and font.stat().st_size < 150_000
    assert (font.parent / "OFL-NotoSansArabic.txt").read_text(encoding="utf-8").count("SIL Open Font License") >= 1


def test_two_runs_side_by_side_and_a_busy_port(run_dir, capsys):
    from harness.view.app import create_app
    from harness.view.data import read_runs
    runs = read_runs([run_dir, run_dir])
    assert list(runs) == ["r", "r-2"]
    page = create_app(runs, "tok").test_client().get("/case/r-2/chest-pain.fr",
                                                     headers={"Host": "localhost"}).get_data(as_text=True)
    assert all(f'data-system="{s}"' in page for s in ("r/good", "r/poor", "r-2/good", "r-2/poor"))
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["view", str(run_dir), "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1 port" in capsys.readouterr().err


def test_labels_written_at_once_are_all_kept(run_dir):
    """Threads labelling at once, as two reviewers and as one: each write merges under the file's lock."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.review import label_file
    from harness.view.data import read_runs
    from harness.view.labels import answer_entry, save_label
    run = read_runs([run_dir])["r"]
    pairs = [(r["target"], r["case_id"], v["id"]) for r in run.rows if r.get("answer") is not None
             for v in r["verdicts"]]
    jobs = [(who, pair) for who in ("Concurrent A", "Concurrent B") for pair in pairs]
    save = lambda job: save_label(run, job[0], answer_entry(run, job[1][0], job[1][1], 0, job[1][2]), "met", "", "view")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save, jobs))
    for who in ("Concurrent A", "Concurrent B"):
        stored = _label_lines(label_file(run_dir, who))
        assert len(stored) == len(pairs) and {l["reviewer"] for l in stored} == {who}


def test_search_is_nfc_and_case_insensitive_and_a_broken_label_file_is_named(run_dir, tmp_path):
    import unicodedata

    from harness.view.app import create_app
    from harness.view.data import read_runs
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    client = create_app(read_runs([copy]), "tok").test_client()
    decomposed = unicodedata.normalize("NFD", "PÈRE")
    assert decomposed != "PÈRE"
    page = client.get("/?" + urllib.parse.urlencode({"q": decomposed}),
                      headers={"Host": "127.0.0.1"}).get_data(as_text=True)
    assert re.findall(r'<tr data-case="([^"]+)"', page) == ["chest-pain.fr"]
    (copy / "labels").mkdir(exist_ok=True)
    (copy / "labels" / "broken.jsonl").write_text("{not json\n", encoding="utf-8")
    reply = client.get("/case/r/chest-pain.fr", headers={"Host": "127.0.0.1"})
    assert reply.status_code == 500 and "broken.jsonl:1" in reply.get_data(as_text=True)


def test_beyond_loopback_it_warns_and_answers_any_host_only_after_the_passphrase(run_dir):
    """Listening on every address (bound, never connected to) gives a warning; no page is served before the
    passphrase."""
    from harness.view.app import prepare
    served = prepare([run_dir], "0.0.0.0", 0, "sésame", "BILAN_PASSPHRASE")
    try:
        assert "not only this computer" in served.warning and served.link.startswith("http://0.0.0.0:")
        client = served.server.app.test_client()
        assert client.get("/", headers={"Host": "bilan.lan"}).headers["Location"].endswith("/login")
    finally:
        served.server.server_close()


def test_the_run_directory_is_read_not_changed_but_for_labels(run_dir):
    """Last in this module: after every page and label above, only RUN/labels has changed (and the page that
    `bilan agreement` wrote: agreement.html and .json)."""
    after = _outside_labels(run_dir)
    for name in ("agreement.html", "agreement.json"):
        after.pop(name, None)
    assert BEFORE and after.keys() == BEFORE.keys()
    assert [name for name in after if after[name] != BEFORE[name]] == []
    by_browser = {"Dr-Amina.jsonl", "Dr-Youssef.jsonl"} if CHROMIUM else set()    # their tests need Chromium
    assert {p.name for p in (run_dir / "labels").glob("*.jsonl")} >= by_browser | {"Mallory.jsonl"}
