"""The report pages without a browser: the one script is allowed by its hash and nothing else may run; the
Markdown outputs keep untrusted text inert."""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from harness.cli import main
from harness.report_compare import gate_markdown


def _policy(page: str) -> str:
    return re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)


def test_each_page_allows_only_its_own_script_by_hash(suite_dir: Path):
    run_dir = suite_dir / "out"
    assert main(["run", "--out", str(run_dir)]) == 0
    assert main(["compare", str(run_dir), "--out", str(suite_dir / "cmp")]) == 0
    for page_path in [*run_dir.glob("*.html"), suite_dir / "cmp" / "compare.html"]:
        page = page_path.read_text(encoding="utf-8")
        policy = _policy(page)
        assert "default-src 'none'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
        assert len(scripts) == 1, page_path.name
        digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in policy, page_path.name
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", page), page_path.name        # no event handler attribute


def test_gate_markdown_escapes_names():
    result = {"status": "pass", "regressions": 0, "options": {"max_drop": 0.02, "alpha": 0.05}, "paired_cases": 5,
              "tested": 1, "warnings": ["a | b"], "baseline": {"run_id": "main"},
              "candidate": {"run_id": "pr|*x*", "target": "t"},
              "checks": [{"scope": "language", "name": "ar|<b>", "n": 5, "baseline": 0.5, "candidate": 0.5,
                          "change": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_holm": 1.0, "regression": False,
                          "outcome": "no clear change"}]}
    text = gate_markdown(result)
    assert "` pr|*x* `" in text and "ar\\|\\<b\\>" in text and "a \\| b" in text     # a code span shows its text as is


def test_never_events_come_first_and_each_language_page_has_them_and_its_gap(tmp_path: Path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "gap.yaml"
    config.write_text(f"suite: {{cases: {root / 'cases'}, rubrics: {root / 'rubrics'}, locale: "
                      f"{root / 'rubrics/locales/ma.yaml'}}}\n"
                      "targets:\n  - {name: assistant, provider: replay, answers: "
                      f"{root / 'cases/answers/language-gap'}}}\n"
                      "grader: {provider: rules}\n", encoding="utf-8")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--config", str(config), "--out", str(out),
                           "--no-cache"],
                          capture_output=True, text=True, cwd=root, check=True)
    assert re.search(r"never-events: \d+ of \d+ answers \(.*ary-Arab \d+", done.stdout)      # in the terminal too
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index('id="never-events"') < index.index("<h2>Overall</h2>")
    page = (out / "ary-Arab.html").read_text(encoding="utf-8")
    assert page.index('id="never-events"') < page.index('id="gap"') < page.index('id="scores"')
    links = re.findall(r'href="#(case-[^"]+)"', page)
    assert links and all(f'id="{anchor}"' in page for anchor in links)    # each never-event links to its case
    assert re.search(r'id="gap".*?<td class="num"><span class="flag">-0\.\d+', page, re.S)   # below French, in red
    assert 'id="gap"' not in (out / "fr.html").read_text(encoding="utf-8")
    markdown = (out / "ary-Arab.md").read_text(encoding="utf-8")
    assert markdown.index("## Never-events in ary-Arab") < markdown.index("## Gap to fr") < markdown.index("## Scores")
