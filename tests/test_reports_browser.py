"""The HTML reports in headless Chromium: they render without errors, Arabic is laid out right to left,
Tifinagh gets its font, the filters work, and nothing a model wrote runs. Screenshots are kept in the pytest
temporary folder (printed with -s)."""
from __future__ import annotations

from pathlib import Path

import pytest

from browser import Browser, find_chromium, hostile_run
from harness.cli import main

DATA = Path(__file__).parent / "data"
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                                                          ".ci/run installs it)")
MARK = "pwned"
HOSTILE = (f'Call 911. <script>document.title="{MARK}"</script><img src=x onerror="document.title=\'{MARK}\'">'
           f'<svg onload="document.title=\'{MARK}\'"></svg><a href="javascript:document.title=\'{MARK}\'">open</a>'
           f'<iframe srcdoc="<script>parent.document.title=1</script>"></iframe> [x](javascript:alert(3))'
           '<style>body{display:none}</style><link rel="stylesheet" href="http://192.0.2.1/x.css">'
           '<img src="http://192.0.2.1/t.png"><div style="background:url(http://192.0.2.1/b.png)">css</div>'
           '\u202e met :tcidrev\u202c')


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """A run of the small test suite (with a hostile answer in ary-Latn) and a comparison of its two targets."""
    run_dir = hostile_run(tmp_path_factory.mktemp("browser"), DATA, HOSTILE, main)
    root = run_dir.parent.parent
    assert main(["compare", str(run_dir), "--out", str(root / "cmp")]) == 0
    pages = {p.stem: p for p in run_dir.glob("*.html")}
    pages["compare"] = root / "cmp" / "compare.html"
    return pages


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium with a fresh profile for the module."""
    b = Browser(CHROMIUM, tmp_path_factory.mktemp("profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots are kept."""
    return tmp_path_factory.mktemp("screenshots")


def _open_all(browser: Browser) -> None:
    browser.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")


@pytest.mark.parametrize("page", ["index", "fr", "ary-Arab", "ary-Latn", "en", "zgh-Tfng", "compare"])
def test_each_report_renders_without_errors(browser, reports, shots, page):
    browser.open(reports[page])
    _open_all(browser)
    assert browser.evaluate("document.title").startswith("Bilan")
    # the hashed script ran
    assert browser.evaluate("document.documentElement.getAttribute('data-filters')") == "ready"
    images = browser.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images)                                       # every chart decoded
    assert browser.evaluate("document.body.innerText.length") > 500
    assert browser.errors() == []
    shot = browser.screenshot(shots / f"{page}.png", full_page=page in ("compare", "ary-Arab"))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


_GLYPHS = """(() => {
  const el = document.querySelector('.turn .untrusted');
  el.closest('details').open = true;
  const text = el.firstChild, range = document.createRange(), style = getComputedStyle(el);
  const rect = i => { range.setStart(text, i); range.setEnd(text, i + 1); return range.getBoundingClientRect(); };
  const box = el.getBoundingClientRect(), second = text.data.indexOf(' ') + 1;
  const first = rect(0), later = rect(second);
  return {direction: style.direction, dir: el.getAttribute('dir'), first: [first.left, first.right, first.top],
          later: [later.left, later.right, later.top],
          left: box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft),
          right: box.right - parseFloat(style.borderRightWidth) - parseFloat(style.paddingRight)};
})()"""


def test_arabic_is_laid_out_right_to_left(browser, reports, shots):
    browser.open(reports["ary-Arab"])
    g = browser.evaluate(_GLYPHS)
    assert g["dir"] == "rtl" and g["direction"] == "rtl"
    assert abs(g["first"][2] - g["later"][2]) < 2                       # same line
    assert g["first"][0] >= g["later"][1] - 0.5                          # the first word is right of the second
    assert abs(g["right"] - g["first"][1]) < 2                           # and starts at the right edge
    browser.screenshot(shots / "ary-Arab-open.png")
    browser.open(reports["fr"])                                          # French, for contrast
    g = browser.evaluate(_GLYPHS)
    assert g["direction"] == "ltr" and g["first"][1] <= g["later"][0] + 0.5 and abs(g["left"] - g["first"][0]) < 2


def test_tifinagh_text_gets_the_embedded_font(browser, reports):
    browser.open(reports["zgh-Tfng"])
    _open_all(browser)
    fonts = browser.evaluate("document.fonts.ready.then(() => [...document.fonts].map(f => [f.family, f.status]))")
    assert ['"Noto Sans Tifinagh"', "loaded"] in [[f[0] if f[0].startswith('"') else f'"{f[0]}"', f[1]] for f in fonts]
    family = browser.evaluate("getComputedStyle(document.querySelector('.untrusted[lang=\"zgh-Tfng\"]')).fontFamily")
    assert family.startswith('"Noto Sans Tifinagh"')


@pytest.mark.parametrize("page", ["ary-Latn", "index", "compare"])
def test_a_hostile_answer_runs_nothing(browser, reports, page):
    browser.open(reports[page])
    title = browser.evaluate("document.title")
    _open_all(browser)
    browser.evaluate("new Promise(r => setTimeout(r, 300))")
    assert browser.evaluate("document.body.innerText").count('<script>document.title="pwned"</script>') >= 1
    assert browser.evaluate("document.title") == title != MARK
    assert browser.evaluate("document.scripts.length") == 1             # the report's own filter script only
    assert browser.evaluate("document.querySelectorAll('img[src=\"x\"], svg, iframe, "
                            "a[href^=\"javascript:\"]').length") == 0
    assert browser.evaluate("document.querySelectorAll('link, img[src^=\"http\"], body style, "
                            "[style*=\"url(\"]').length") == 0
    assert browser.evaluate("performance.getEntriesByType('resource')"
                            ".filter(e => !e.name.startsWith('data:')).length") == 0
    assert browser.evaluate("getComputedStyle(document.body).display") != "none"      # the answer's CSS did nothing
    assert browser.errors() == []


def test_the_policy_blocks_a_script_injected_into_a_test_copy(browser, reports, tmp_path):
    html = reports["index"].read_text(encoding="utf-8")
    injected = html.replace("<body>", f'<body><script>document.title="{MARK}"</script><img src=x '
                                      f'onerror="document.title=\'{MARK}\'">', 1)
    copy = tmp_path / "index.html"
    copy.write_text(injected, encoding="utf-8")
    browser.open(copy)
    assert browser.evaluate("document.title") != MARK
    assert browser.evaluate("document.documentElement.getAttribute('data-filters')") == "ready"
    assert any("Content Security Policy" in e for e in browser.errors())


def test_filters_by_target_and_verdict(browser, reports):
    browser.open(reports["ary-Arab"])
    choose = ("(s, v) => { const e = document.querySelector(`select[data-filter=${s}]`); e.value = v; "
              "e.dispatchEvent(new Event('change')); }")
    visible = "t => [...document.querySelectorAll(`[data-item][data-target=${t}]`)].filter(e => !e.hidden).length"
    assert browser.evaluate(f"({visible})('poor')") == 1
    browser.evaluate(f"({choose})('target', 'good')")
    assert browser.evaluate(f"({visible})('poor')") == 0 and browser.evaluate(f"({visible})('good')") == 1
    browser.evaluate(f"({choose})('target', ''); ({choose})('verdict', 'never-event')")
    assert browser.evaluate(f"({visible})('good')") == 0 and browser.evaluate(f"({visible})('poor')") == 1
    assert browser.evaluate("document.getElementById('filter-count').textContent") == "1 of 1 shown"
