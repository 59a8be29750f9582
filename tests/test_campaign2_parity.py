"""Issue 12, HealthBench parity and replay samples: replayed samples are used (or refused, located, never
ignored), the meta-eval keys and categories of the reference, the export's `score:*` metrics, the physician
completion groups kept on import, and no test that asserts on wall time."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _set_target(suite: Path, name: str, **fields) -> None:
    config = yaml.safe_load((suite / "bilan.yaml").read_text(encoding="utf-8"))
    for target in config["targets"]:
        if target["name"] == name:
            target.update(fields)
    (suite / "bilan.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _sampled_answers(suite: Path, samples: int) -> list[dict]:
    """good.jsonl with every answer repeated as samples 0..samples-1; the last sample of chest-pain.fr is poor."""
    rows = [json.loads(line) for line in (suite / "answers" / "good.jsonl").read_text(encoding="utf-8").splitlines()]
    out = []
    for row in rows:
        for k in range(samples):
            answer = ("Donnez-lui une tisane." if (row["case_id"], k) == ("chest-pain.fr", samples - 1)
                      else row["answer"])
            out.append({"case_id": row["case_id"], "sample": k, "answer": answer})
    return out


# --- replayed samples -----------------------------------------------------------------------------------

def test_replayed_samples_are_all_run_and_give_worst_at_k(suite_dir: Path, capsys):
    # README: worst_at_k needs `samples: k` on a target, "or a `sample` field in replayed answer files".
    _write_jsonl(suite_dir / "answers" / "good.jsonl", _sampled_answers(suite_dir, 3))
    assert main(["validate"]) == 0
    assert "18 recorded answers" in capsys.readouterr().out          # 15 good (5 cases x 3 samples) + 3 poor
    assert main(["run", "--out", "out"]) == 0
    good = [r for r in _rows(suite_dir / "out") if r["target"] == "good"]
    assert sorted((r["case_id"], r["sample"]) for r in good) == sorted(
        (c, k) for c in ("chest-pain.fr", "chest-pain.ary-Arab", "chest-pain.ary-Latn", "heat-stroke.en",
                         "heat-stroke.zgh-Tfng") for k in range(3))
    by_key = {(r["case_id"], r["sample"]): r for r in good}
    assert by_key[("chest-pain.fr", 2)]["answer"] == "Donnez-lui une tisane."
    summary = json.loads((suite_dir / "out" / "summary.json").read_text(encoding="utf-8"))
    worst = summary["worst_at_k"]["good"]
    assert set(worst) == {"1", "2", "3"} and worst["3"] < worst["1"]
    assert "poor" not in summary["worst_at_k"]                      # one answer a case: nothing to take the worst of


def test_a_replayed_sample_beyond_the_declared_samples_is_located(suite_dir: Path, capsys):
    _write_jsonl(suite_dir / "answers" / "good.jsonl", _sampled_answers(suite_dir, 3))
    _set_target(suite_dir, "good", samples=2)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.splitlines()
    config_line = next(i for i, line in enumerate((suite_dir / "bilan.yaml").read_text().splitlines(), 1)
                       if "samples: 2" in line)
    assert err[:5] == [f"answers/good.jsonl:{3 * i + 3}:1: error: sample: 2 is beyond the 2 samples that target 'good' "
                       f"declares (bilan.yaml:{config_line}); expected a sample from 0 to 1, or samples: 3 or more, or "
                       "no samples key on a replay target (then its files decide)" for i in range(5)]
    assert err[5:] == ["5 error(s) in 1 file(s)"]


def test_a_replayed_sample_index_past_the_samples_limit_is_located(suite_dir: Path, capsys):
    rows = [json.loads(line)
            for line in (suite_dir / "answers" / "good.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[1]["sample"] = 100_000_000        # would otherwise make 100 million jobs per case
    _write_jsonl(suite_dir / "answers" / "good.jsonl", rows)
    assert main(["validate"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "answers/good.jsonl:2:1: error: sample: 100000000 is too large; expected at most 99", "1 error(s) in 1 file(s)"]


# --- HealthBench: meta-eval keys and categories -------------------------------------------------------

from test_healthbench import EMERGENCY, GRADER, HEDGING, META, meta_grader, synthetic, use_fake_grader  # noqa: E402


def test_meta_eval_metrics_have_the_references_balanced_precision_and_recall():
    from harness.agreement import flatten, rater_metrics
    # simple-evals healthbench_meta_eval_test.py's case: grader T, F, T against physicians [T, T, F], [T, F], [F].
    model = rater_metrics([True, False, True], [[True, True, False], [True, False], [False]], ["a", "a", "b"])
    overall = model["overall"]
    assert overall["precision_balanced"] == {"value": (2 / 4 + 1 / 2) / 2, "n": 6}      # n: 4 + 2, as the reference
    assert overall["recall_balanced"] == {"value": (2 / 3 + 1 / 3) / 2, "n": 6}         # n: 3 + 3
    assert model["by_group"]["b"]["precision_balanced"]["value"] is None           # no pair where the grader said no
    flat = flatten(rater_metrics(GRADER, [r["binary_labels"] for r in META], [r["category"] for r in META]),
                   "pairwise_model")
    assert flat["pairwise_model_precision_balanced"]["value"] == pytest.approx((4 / 6 + 1 / 2) / 2)
    assert flat["pairwise_model_recall_balanced"]["value"] == pytest.approx((4 / 5 + 1 / 3) / 2)
    assert flat[f"{EMERGENCY}: pairwise_model_recall_balanced"]["value"] == pytest.approx((1 + 0) / 2)     # 4/4 and 0/1
    assert flat[f"{HEDGING}: pairwise_model_recall_balanced"]["value"] == pytest.approx((0 + 1 / 2) / 2)   # 0/1 and 1/2


def _meta_run(tmp_path: Path, fake_server) -> Path:
    """The invented meta-eval file of test_healthbench imported, then graded by the fake grader into DIR/run."""
    source = tmp_path / "meta.jsonl"
    _write_jsonl(source, META)
    suite = tmp_path / "meta"
    assert main(["import", "healthbench-meta", str(source), "--out", str(suite)]) == 0
    fake_server.responder = meta_grader
    use_fake_grader(suite, fake_server)
    assert main(["run", "--config", str(suite / "bilan.yaml"), "--out", str(suite / "run")]) == 0
    return suite


def test_bilan_agreement_reads_the_imported_meta_eval_labels_by_category(tmp_path: Path, fake_server, capsys):
    suite = _meta_run(tmp_path, fake_server)
    capsys.readouterr()
    assert main(["agreement", str(suite / "run"), "--json"]) == 0        # the labels live beside bilan.yaml
    summary = json.loads(capsys.readouterr().out)
    assert (summary["labelled_items"], summary["reviewers"]) == (4, ["p1", "p2", "p3"])
    assert summary["labels"] == [str(suite / "labels")]
    assert summary["grader"]["overall"]["macro_f1"]["value"] == pytest.approx(31 / 55)
    by_category = summary["grader"]["by_category"]
    assert set(by_category) == {EMERGENCY, HEDGING} and by_category[HEDGING]["macro_f1"]["value"] == 0.25
    assert by_category[EMERGENCY]["pairs"] == 5 and by_category[HEDGING]["pairs"] == 3
    assert set(summary["grader"]["by_theme"]) == {"emergency_referrals", "hedging"}
    # The reference's own output: flat keys, the headline score, and the physicians' leave-one-out figures.
    hb = summary["healthbench"]
    assert hb["score"] == pytest.approx(31 / 55)
    assert hb["metrics"]["pairwise_model_precision_balanced"] == pytest.approx(7 / 12)
    assert hb["metrics"]["pairwise_model_recall_balanced"] == pytest.approx(17 / 30)
    assert hb["metrics"][f"{HEDGING}: pairwise_model_f1_balanced"] == 0.25
    assert f"{EMERGENCY}: pairwise_model_f1_balanced" not in hb["metrics"]             # None: left out, as there
    assert hb["model_agreement_metrics"][f"{EMERGENCY}: pairwise_model_f1_balanced"] == {"value": None, "n": 5}
    physicians = hb["physician_agreement_metric_lists"]["pairwise_physician_f1_balanced"]
    assert {p: v["value"] for p, v in physicians.items()} == {"p1": 0.25, "p2": pytest.approx(0.2), "p3": None}
    assert set(summary["clinicians"]["p1"]["by_category"]) == {EMERGENCY, HEDGING}
    page = (suite / "run" / "agreement.html").read_text(encoding="utf-8")
    assert "by category" in page and EMERGENCY in page


def test_bilan_agreement_takes_a_labels_folder_and_locates_bad_labels(tmp_path: Path, fake_server, capsys):
    suite = _meta_run(tmp_path, fake_server)
    moved = tmp_path / "elsewhere"
    (suite / "labels").rename(moved)
    capsys.readouterr()
    assert main(["agreement", str(suite / "run")]) == 2              # no labels anywhere: said, not a traceback
    assert "no clinician labels" in capsys.readouterr().err
    assert main(["agreement", str(suite / "run"), "--labels", str(moved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labelled_items"] == 4
    with open(moved / "p1.jsonl", "a", encoding="utf-8") as f:
        f.write('{"case_id": "x", "met": "yes"}\n{not json\n')
    lines = (moved / "p1.jsonl").read_text(encoding="utf-8").count("\n")
    assert main(["agreement", str(suite / "run"), "--labels", str(moved)]) == 2
    err = capsys.readouterr().err
    assert (f"p1.jsonl:{lines - 1}:1: error: expected a label "
            "{case_id, answer_sha256, criterion, met, reviewer}") in err
    assert f"p1.jsonl:{lines}:2: error: invalid JSON" in err and "Traceback" not in err


# --- HealthBench: export and import ---------------------------------------------------------------------

def _graded_import(tmp_path: Path, fake_server, records: list[dict]) -> Path:
    source = tmp_path / "hb.jsonl"
    _write_jsonl(source, records)
    suite = tmp_path / "hb"
    assert main(["import", "healthbench", str(source), "--out", str(suite)]) == 0
    fake_server.responder = lambda request: json.dumps(
        {"explanation": "met when the criterion is worth 6",
         "criteria_met": "worth 6 points" in request.last_user_message})
    use_fake_grader(suite, fake_server)
    assert main(["run", "--config", str(suite / "bilan.yaml"), "--out", str(suite / "run")]) == 0
    return suite


def _ideal(group: str, refs: int = 0) -> dict:
    return {"ideal_completion": f"An ideal answer written in {group}.", "ideal_completions_group": group,
            "ideal_completions_ref_completions": [f"Reference {k} ({group})." for k in range(refs)]}


def test_export_has_the_references_score_metrics(tmp_path: Path, fake_server, capsys):
    suite = _graded_import(tmp_path, fake_server, [synthetic("e1", ideal_completions_data=_ideal("Group 1")),
                                                   synthetic("e2", points=(6, 3),
                                                             ideal_completions_data=_ideal("Group 1"))])
    out = tmp_path / "all.json"
    assert main(["export", "healthbench", str(suite / "run"), "--out", str(out), "--target", "physician-ideal"]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    metrics = result["metrics"]
    # simple-evals' _aggregate_get_clipped_mean: "score" is aggregated like every metric, then popped to the top.
    assert "score" not in metrics and result["score"] == metrics["overall_score"] == pytest.approx((1 + 6 / 9) / 2)
    assert metrics["score:n_samples"] == metrics["overall_score:n_samples"] == 2
    assert 0 < metrics["score:bootstrap_std"] < 0.5
    for name in [k for k in metrics if k != "score" and not k.startswith("bilan:")
                 and not k.endswith((":n_samples", ":bootstrap_std"))]:
        assert {f"{name}:n_samples", f"{name}:bootstrap_std"} <= set(metrics), name


def test_import_keeps_the_ideal_completions_group_for_the_physician_baselines(tmp_path: Path, fake_server):
    records = [synthetic("g1", ideal_completions_data=_ideal("Group 1")),
               synthetic("g2", points=(6, 3), ideal_completions_data=_ideal("Group 2", refs=4)),
               synthetic("g3", points=(3, 6), ideal_completions_data=_ideal("Group 2", refs=4)),
               synthetic("none")]
    suite = _graded_import(tmp_path, fake_server, records)
    cases = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in (suite / "cases").rglob("*.yaml")}
    assert "ideal_completions_group:group-1" in cases["g1"]["tags"]
    assert ("ideal_completions_group:group-2" in cases["g2"]["tags"]
            and "ideal_completions_group:group-2" in cases["g3"]["tags"])
    assert not any(t.startswith("ideal_completions_group") for t in cases["none"]["tags"])
    # simple-evals' physician_completions mode grades each group's ideal completions apart: the export of the
    # physician-ideal target has that score under the group's tag (g1: 1; g2: 6/9; g3: 6/9 met of 9).
    result = __import__("harness.healthbench",
                        fromlist=["export_healthbench"]).export_healthbench(suite / "run", "physician-ideal")
    metrics = result["metrics"]
    assert (metrics["ideal_completions_group:group-1"] == 1.0
            and metrics["ideal_completions_group:group-1:n_samples"] == 1)
    assert metrics["ideal_completions_group:group-2"] == pytest.approx(6 / 9)
    assert metrics["ideal_completions_group:group-2:n_samples"] == 2


def test_a_bad_ideal_completions_group_is_located(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    record = synthetic("bad", ideal_completions_data=dict(_ideal("Group 1"), ideal_completions_group=3))
    _write_jsonl(tmp_path / "bad.jsonl", [record])
    assert main(["import", "healthbench", "bad.jsonl", "--out", "suite"]) == 2
    col = json.dumps(record).find('"ideal_completions_data":') + 1
    assert capsys.readouterr().err.splitlines() == [
        f"bad.jsonl:1:{col}: error: ideal_completions_data.ideal_completions_group: expected a group name such as "
        '"Group 1", got 3', "1 error(s) in 1 file(s)"]


# --- no test asserts on wall time -----------------------------------------------------------------------

import ast  # noqa: E402

CLOCKS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns", "process_time"}


def _reads_clock(node: ast.AST, tainted: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if (isinstance(func, ast.Attribute) and func.attr in CLOCKS and isinstance(func.value, ast.Name)
                    and func.value.id == "time") or (isinstance(func, ast.Name) and func.id in CLOCKS - {"time"}):
                return True
        if isinstance(sub, ast.Name) and sub.id in tainted:
            return True
    return False


def wall_time_asserts(path: Path) -> list[str]:
    """`file:line` of every assert in a test module whose condition reads the clock, directly or through a
    variable computed from it (started, elapsed, ...)."""
    found = []
    for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        tainted: set[str] = set()
        assigns = [n for n in ast.walk(func) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                   and n.value is not None]
        for _ in range(3):          # names computed from names computed from the clock
            for node in assigns:
                if _reads_clock(node.value, tainted):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    tainted |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        found += [f"{path.name}:{n.lineno}" for n in ast.walk(func) if isinstance(n, ast.Assert)
                  and _reads_clock(n.test, tainted)]
    return found


def test_no_test_asserts_on_wall_time():
    # A loaded machine stretches any duration: test_200_concurrent_requests once took 5.45 s against a 3 s limit
    # and failed the README's test command. Speed is measured in benchmarks/; a hang is caught by bounded.finishes.
    tests = Path(__file__).parent
    found = [hit for path in sorted(tests.glob("*.py")) for hit in wall_time_asserts(path)]
    assert found == [], ("asserts on wall time (move the figure to benchmarks/, guard a hang with bounded.finishes): "
                         f"{found}")
