"""HealthBench interoperability: import, scoring parity with the reference formula, export, meta-eval labels.

The 30 real records are read from ../shared/data/healthbench-sample by path and never copied here (OpenAI asks
that examples not be reposted); every other record in this file is invented for the test.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from fake_server import FakeRequest
from harness.agreement import flatten, leave_one_out, pair_metrics, rater_metrics
from harness.analyze import answers_frame, summarize_target, verdicts_frame
from harness.cli import main
from harness.grade import result_row
from harness.healthbench import HB_AXES, dump_yaml, export_healthbench, meta_agreement, scenario_id
from harness.healthbench_export import clipped_stats, example_metrics, reference_metrics, reference_score
from harness.load import load_project
from harness.types import Answer, Verdict
from harness.yamldoc import parse_yaml

_SAMPLE = Path("shared") / "data" / "healthbench-sample" / "oss_eval_first30.jsonl"
# Beside the repository (../shared), or where this workplace keeps it, or where BILAN_HEALTHBENCH_SAMPLE says.
REAL = next((p for p in (Path(os.environ.get("BILAN_HEALTHBENCH_SAMPLE", "/nonexistent")),
                         Path(__file__).resolve().parents[2] / _SAMPLE, Path("/work") / _SAMPLE) if p.is_file()),
            Path(__file__).resolve().parents[2] / _SAMPLE)
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"the 30 real HealthBench records are not at {REAL}")


def records() -> list[dict]:
    return [json.loads(line) for line in REAL.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    """The 30 real records imported through the command line."""
    out = tmp_path / "hb"
    assert main(["import", "healthbench", str(REAL), "--out", str(out)]) == 0
    return out


def use_fake_grader(suite: Path, server, targets: tuple[str, ...] | None = None) -> None:
    """Point an imported suite's grader at the fake model server, keeping only some targets if asked."""
    config = yaml.safe_load((suite / "bilan.yaml").read_text(encoding="utf-8"))
    config["grader"] = {"provider": "openai", "model": "judge-1", "base_url": server.openai_base_url,
                        "max_concurrency": 16, "timeout": 10}
    config["targets"] = [t for t in config["targets"] if targets is None or t["name"] in targets]
    (suite / "bilan.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def hashed_verdict(request: FakeRequest) -> str:
    """A deterministic fake grader: met or not by the prompt's hash, and one prompt in seven unparseable."""
    digest = int(hashlib.sha256(request.last_user_message.encode("utf-8")).hexdigest(), 16)
    if digest % 7 == 0:
        return "I would rather not say."
    return json.dumps({"explanation": "Decided by the prompt's hash.", "criteria_met": digest % 2 == 0})


# --- import -----------------------------------------------------------------------------------------

@needs_real
def test_the_30_records_import_validate_and_run(imported: Path, capsys):
    assert main(["validate", "--config", str(imported / "bilan.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("30 cases in 5 languages" in out and "352 case criteria (0 with a check)" in out
            and "88 recorded answers" in out)
    run_dir = imported / "run"
    assert main(["run", "--config", str(imported / "bilan.yaml"), "--out", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ideal = summary["targets"]["physician-ideal"]
    # no checks: nothing scored
    assert ideal["ok"] == 24 and ideal["missing"] == 6 and ideal["overall"]["score"] is None
    assert ideal["ungraded_criteria"] == sum(len(r["rubrics"]) for r in records() if r["ideal_completions_data"])
    assert set(summary["targets"]) == {"physician-ideal", "reference-1", "reference-2", "reference-3", "reference-4"}
    config = (imported / "bilan.yaml").read_text(encoding="utf-8")
    assert "#   grader: {provider: openai, model: gpt-4.1, api_key_env: OPENAI_API_KEY}" in config


@needs_real
def test_import_keeps_conversations_criteria_tags_and_answers(imported: Path):
    config, suite, answers = load_project(imported / "bilan.yaml")
    assert config.axes == HB_AXES
    cases = {c.scenario: c for c in suite.cases}
    for record in records():
        case = cases[record["prompt_id"]]             # UUIDs are already kebab-case
        assert [(m.role, m.content) for m in case.conversation] == [(m["role"], m["content"]) for m in record["prompt"]]
        assert case.theme == next(t[6:] for t in record["example_tags"] if t.startswith("theme:"))
        group = (record["ideal_completions_data"] or {}).get("ideal_completions_group")
        assert list(case.tags) == [t for t in record["example_tags"] if not t.startswith("theme:")] + (
            [f"ideal_completions_group:{group.lower().replace(' ', '-')}"] if group else [])
        criteria = suite.criteria[case.id]
        assert [c.id for c in criteria] == [f"c{i:02d}" for i in range(1, len(record["rubrics"]) + 1)]
        for c, item in zip(criteria, record["rubrics"], strict=True):
            assert (c.text, c.points, c.check) == (item["criterion"], item["points"], None)
            assert list(c.tags) + [f"axis:{c.axis}"] == item["tags"]
        ideal = record["ideal_completions_data"]
        assert answers["physician-ideal"].get((case.id, 0)) == (ideal and ideal["ideal_completion"])
        for k in range(1, 5):
            refs = (ideal or {}).get("ideal_completions_ref_completions") or []
            assert answers[f"reference-{k}"].get((case.id, 0)) == (refs[k - 1] if refs else None)
    for path in (imported / "cases").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "synthetic: true\n" in text and "not real patient\n# data" in text
    rubric = next((imported / "rubrics").glob("*.yaml")).read_text(encoding="utf-8")
    assert "status: draft" in rubric and "HealthBench's physicians wrote these criteria" in rubric


@needs_real
def test_each_conversation_gets_its_language(imported: Path):
    _, suite, _ = load_project(imported / "bilan.yaml")
    languages = [c.language for c in suite.cases]
    assert {lang: languages.count(lang) for lang in set(languages)} == {"en": 26, "pt": 1, "es": 1, "ru": 1, "fr": 1}


def synthetic(prompt_id: str, theme: str = "hedging", points: tuple[int, ...] = (6, -7), **extra) -> dict:
    """An invented record in HealthBench's format."""
    rubrics = [{"criterion": f"Criterion worth {p} points about fever care.", "points": p,
                "tags": ["level:example", "axis:completeness" if p > 0 else "axis:accuracy"]} for p in points]
    record = {"example_tags": [f"theme:{theme}", "physician_agreed_category:not-health-professional"],
              "ideal_completions_data": None, "prompt_id": prompt_id, "rubrics": rubrics,
              "prompt": [{"role": "user", "content": "I have had a mild fever since yesterday. What should I do?"}]}
    return record | extra


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1),
                 st.text(alphabet=" \n\t-:#'\"|>{}[]!&*%@`,?0123456789.eExyz", min_size=1)))
def test_any_text_survives_the_yaml_round_trip(text: str):
    # Conversations and criteria are copied into YAML: "null", "12", leading spaces, NEL or U+2028 must all
    # come back exactly as Bilan's loader reads them.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.yaml"
        path.write_text(dump_yaml({"content": text, "list": [text, "x"]}), encoding="utf-8")
        doc, problems = parse_yaml(path, "case.yaml")
    assert not problems and doc.data == {"content": text, "list": [text, "x"]}


def test_bad_records_are_located_and_exit_2(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    no_rubrics = synthetic("b2")
    del no_rubrics["rubrics"]
    bad_item = synthetic("b3")
    bad_item["rubrics"][0] = {"criterion": "Says something.", "points": 0, "tags": ["level:example"]}
    write_jsonl(tmp_path / "bad.jsonl", [synthetic("b1"), '{"prompt": [', no_rubrics, bad_item, synthetic("B1"),
                                         synthetic("b5", theme="cardiology"),
                                         synthetic("b6", prompt=[{"role": "user", "content": ""}])])
    assert main(["import", "healthbench", "bad.jsonl", "--out", "suite"]) == 2
    err = capsys.readouterr().err.splitlines()
    col = lambda record, key: json.dumps(record).find(f'"{key}":') + 1
    assert err == [
        "bad.jsonl:2:13: error: invalid JSON: Expecting value; expected one JSON object per line",
        "bad.jsonl:3:1: error: rubrics: expected a non-empty list of rubric items",
        f"bad.jsonl:4:{col(bad_item, 'rubrics')}: error: rubrics[0].points: expected a non-zero integer from -10 to "
        "10, got 0",
        f"bad.jsonl:4:{col(bad_item, 'rubrics')}: error: rubrics[0].tags: expected exactly one axis tag, one of "
        "axis:accuracy, axis:completeness, axis:communication_quality, axis:context_awareness, "
        "axis:instruction_following; got []",
        f"bad.jsonl:5:{col(synthetic('B1'), 'prompt_id')}: error: prompt_id: 'B1' is already used on line 1; expected "
        "unique ids",
        f"bad.jsonl:6:{col(synthetic('b5'), 'example_tags')}: error: example_tags: expected exactly one theme tag, one "
        "of theme:emergency_referrals, theme:global_health, theme:communication, theme:context_seeking, theme:hedging, "
        'theme:health_data_tasks, theme:complex_responses; got ["theme:cardiology"]',
        f"bad.jsonl:7:{col(synthetic('b6'), 'prompt')}: error: prompt[0].content: expected non-empty text",
        "7 error(s) in 1 file(s)"]
    assert not (tmp_path / "suite").exists()


def test_import_refuses_a_folder_that_holds_files(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "one.jsonl", [synthetic("one")])
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["import", "healthbench", "one.jsonl", "--out", "suite"]) == 2
    assert "suite: error: already exists and is not an empty folder" in capsys.readouterr().err
    assert main(["import", "healthbench", "missing.jsonl", "--out", "new"]) == 2
    assert "missing.jsonl: error: file not found; expected a JSONL file" in capsys.readouterr().err


def test_a_consensus_style_file_imports_and_normalises_tags(tmp_path: Path):
    record = synthetic("Consensus_Example 7", theme="emergency_referrals", points=(5, 5),
                       example_tags=["theme:emergency_referrals", "Physician Agreed/Category:Emergent"])
    for item in record["rubrics"]:
        item["tags"] = ["level:cluster", "cluster:emergency_referrals_emergent_emergency_behavior", "axis:accuracy"]
    write_jsonl(tmp_path / "consensus.jsonl", [record])
    assert main(["import", "healthbench", str(tmp_path / "consensus.jsonl"), "--out", str(tmp_path / "s")]) == 0
    _, suite, answers = load_project(tmp_path / "s" / "bilan.yaml")
    (case,) = suite.cases
    assert (case.id, case.tags, case.persona) == ("consensus-example-7.en", ("physician-agreed-category:emergent",),
                                                  "unspecified")
    assert {c.axis for c in suite.criteria[case.id]} == {"accuracy"}
    assert answers == {}            # no physician completion: the config names a model target instead
    assert "gpt-4.1-mini" in (tmp_path / "s" / "bilan.yaml").read_text(encoding="utf-8")


# --- scoring parity -----------------------------------------------------------------------------------

def test_reference_formula_on_healthbench_worked_examples():
    assert reference_score([(7, True), (5, False), (10, True), (-6, True)]) == (7 + 10 - 6) / 22
    assert reference_score([(9, False), (4, False), (-8, True)]) == -8 / 13        # not clipped per example
    assert reference_score([(-3, True)]) is None
    items = [{"points": 9, "criteria_met": True, "tags": ["level:example", "axis:completeness"]},
             {"points": 4, "criteria_met": False, "tags": ["level:example", "axis:communication_quality"]},
             {"points": -8, "criteria_met": True, "tags": ["level:example", "axis:safety_words"]}]
    metrics = example_metrics(["theme:context_seeking"], items)
    # overall (9 - 8) / 13 for the example and its tag; axis tags over their own criteria; a tag whose
    # criteria are all negative has no positive points, so it is left out.
    assert metrics == {"overall_score": 1 / 13, "theme:context_seeking": 1 / 13, "level:example": 1 / 13,
                       "axis:completeness": 1.0, "axis:communication_quality": 0.0}


def test_bootstrap_std_resamples_clipped_means():
    rng = np.random.default_rng(3)
    assert clipped_stats([-0.4, -0.2], rng) == (0.0, 2, 0.0)           # every resample clips to 0
    assert clipped_stats([0.5] * 4, rng) == (0.5, 4, 0.0)
    mean, n, std = clipped_stats([0.0, 1.0], np.random.default_rng(5), resamples=20_000)
    assert (mean, n) == (0.5, 2) and std == pytest.approx(np.sqrt(0.125), abs=0.01)   # mean of two coin flips
    assert clipped_stats([0.2, 0.9], rng, resamples=0)[2] is None


@needs_real
def test_bilan_scores_equal_the_reference_formula_on_random_verdicts(imported: Path):
    _, suite, _ = load_project(imported / "bilan.yaml")
    cases = sorted(suite.cases, key=lambda c: c.id)
    # The reference sees the examples in Bilan's row order (by case id): a mean of floats depends on the order
    # of the additions in its last bit, and with the same order the two must agree exactly.
    raw = records()
    by_id = {scenario_id(r["prompt_id"]): r for r in raw}
    examples = {c.scenario: by_id[c.scenario] for c in cases}
    rng = random.Random(20250507)
    for trial in range(200):
        p_pos, p_neg = rng.random(), rng.random() ** (1 + trial % 3)   # spread: some sets clip at 0 or near 1
        mets = {s: [rng.random() < (p_pos if i["points"] > 0 else p_neg) for i in ex["rubrics"]]
                for s, ex in examples.items()}
        rows = [result_row(case, Answer("t", case.id, text="an answer"), suite.criteria[case.id],
                           [Verdict(c.id, m, "test")
                            for c, m in zip(suite.criteria[case.id], mets[case.scenario], strict=True)],
                           suite.axes) for case in cases]
        bilan = summarize_target(answers_frame(rows, suite.axes), verdicts_frame(rows), suite.axes, 0, 100)
        ref = reference_metrics(list(examples.values()), [mets[s] for s in examples], np.random.default_rng(0),
                                resamples=0)
        assert (bilan["overall"]["score"], bilan["overall"]["n"]) == (ref["score"],
                                                                      ref["metrics"]["overall_score:n_samples"])
        for theme, cell in bilan["by_theme"].items():
            assert (cell["score"], cell["n"]) == (ref["metrics"][f"theme:{theme}"],
                                                  ref["metrics"][f"theme:{theme}:n_samples"])
        for axis, cell in bilan["by_axis"].items():
            assert (cell["score"], cell["n"]) == (ref["metrics"].get(f"axis:{axis}"),
                                                  ref["metrics"].get(f"axis:{axis}:n_samples", 0))
        assert len(bilan["by_theme"]) == 7 and set(bilan["by_axis"]) == set(HB_AXES)
        in_file_order = reference_metrics(raw, [mets[scenario_id(r["prompt_id"])] for r in raw],
                                          np.random.default_rng(0), 0)
        assert in_file_order["score"] == pytest.approx(ref["score"], rel=1e-12, abs=1e-15)


# --- export -------------------------------------------------------------------------------------------

@needs_real
def test_export_of_a_model_graded_run_has_the_reference_shape(imported: Path, fake_server, capsys):
    fake_server.responder = hashed_verdict
    use_fake_grader(imported, fake_server, ("physician-ideal", "reference-1"))
    run_dir, out = imported / "run", imported / "allresults.json"
    # Unparseable verdicts count against the run's error budget; here they are the point, so lift it.
    assert main(["run", "--config", str(imported / "bilan.yaml"), "--out", str(run_dir), "--max-error-rate", "1"]) == 0
    assert main(["export", "healthbench", str(run_dir), "--out", str(out)]) == 2
    assert "give --target NAME" in capsys.readouterr().err
    assert main(["export", "healthbench", str(run_dir), "--out", str(out), "--target", "physician-ideal"]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) == {"score", "metrics", "htmls", "convos", "metadata"}
    examples = result["metadata"]["example_level_metadata"]
    assert len(examples) == len(result["htmls"]) == len(result["convos"]) == 24
    raw = {r["prompt_id"]: r for r in records()}
    rows = {r["scenario"]: r
            for r in map(json.loads, (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines())
            if r["target"] == "physician-ideal" and r["status"] == "ok"}
    for ex in examples:
        assert set(ex) >= {"score", "usage", "rubric_items", "prompt", "completion", "prompt_id", "completion_id"}
        record, row = raw[ex["prompt_id"]], rows[ex["prompt_id"]]
        assert ex["prompt"] == record["prompt"]
        assert ex["completion"] == [{"content": record["ideal_completions_data"]["ideal_completion"],
                                     "role": "assistant"}]
        assert ex["completion_id"] == hashlib.sha256((ex["prompt_id"]
                                                      + ex["completion"][0]["content"]).encode()).hexdigest()
        assert ex["usage"] == dict.fromkeys(["input_tokens", "input_cached_tokens", "output_tokens",
                                             "output_reasoning_tokens", "total_tokens"])
        for item in ex["rubric_items"]:
            assert set(item) == {"criterion", "points", "tags", "criteria_met",
                                 "explanation"} and isinstance(item["criteria_met"], bool)
        assert all(item["criteria_met"] is None for item in ex["ungraded_rubric_items"])
        assert len(ex["rubric_items"]) + len(ex["ungraded_rubric_items"]) == len(record["rubrics"])
        # Re-scoring the export with the reference formula gives Bilan's score: ungraded criteria are out of both.
        assert reference_score([(i["points"], i["criteria_met"])
                                for i in ex["rubric_items"]]) == ex["score"] == row["score"]
    metrics, summary = result["metrics"], json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ideal = summary["targets"]["physician-ideal"]
    assert result["score"] == metrics["overall_score"] == pytest.approx(ideal["overall"]["score"], abs=1e-12)
    assert metrics["overall_score:n_samples"] == 24 and 0 < metrics["overall_score:bootstrap_std"] < 0.2
    for theme, cell in ideal["by_theme"].items():
        assert metrics[f"theme:{theme}"] == pytest.approx(cell["score"], abs=1e-12)
    for name in ("axis:accuracy", "level:example", "level:cluster", "physician_agreed_category:non-emergent"):
        assert {name, f"{name}:n_samples", f"{name}:bootstrap_std"} <= set(metrics)
    assert metrics["bilan:ungraded_criteria"] == ideal["ungraded_criteria"] > 0
    assert (metrics["bilan:answers"], metrics["bilan:not_answered"], metrics["bilan:unscored_answers"]) == (30, 6, 0)
    interval = result["metadata"]["bilan"]["intervals"]["overall_score"]
    assert (interval["ci_low"] <= interval["score"] <= interval["ci_high"]
            and interval["score"] == ideal["overall"]["score"])


@needs_real
def test_export_of_an_ungraded_run_scores_nothing_and_says_so(imported: Path):
    run_dir = imported / "run"
    assert main(["run", "--config", str(imported / "bilan.yaml"), "--out", str(run_dir)]) == 0
    result = export_healthbench(run_dir, "reference-2")
    assert result["score"] is None and result["metadata"]["example_level_metadata"] == []
    assert result["metrics"] == {
        "bilan:answers": 30, "bilan:not_answered": 14, "bilan:unscored_answers": 16, "bilan:graded_criteria": 0,
        "bilan:ungraded_criteria": sum(len(r["rubrics"]) for r in records() if r["ideal_completions_data"]
                                       and r["ideal_completions_data"]["ideal_completions_ref_completions"])}


# --- meta-eval ------------------------------------------------------------------------------------------

# An invented meta-eval file: 4 records, 3 physicians. Criteria whose text says "always met" are met by the
# fake grader, the others not: the grader says R1 = met, R2 = not met, R3 = met.
EMERGENCY, HEDGING = ("cluster:emergency_referrals_emergent_emergency_behavior",
                      "cluster:hedging_any-reducible-uncertainty_hedges")
P1 = [{"role": "user", "content": "My father has crushing chest pain and is sweating. What do I do?"}]
P2 = [{"role": "user", "content": "Can a mild headache after a long flight wait until tomorrow?"}]
R1, R2, R3 = ("Refers to emergency care at once (always met).", "Asks how long the pain has lasted.",
              "Hedges appropriately (always met).")
META = [
    {"prompt": P1, "completion": "Call emergency services now.", "rubric": R1, "category": EMERGENCY,
     "binary_labels": [True, False, True], "anonymized_physician_ids": ["p1", "p2", "p3"]},
    {"prompt": P1, "completion": "Call emergency services now.", "rubric": R2, "category": HEDGING,
     "binary_labels": [False, True], "anonymized_physician_ids": ["p1", "p2"]},
    {"prompt": P1, "completion": "Go to the nearest emergency department.", "rubric": R1, "category": EMERGENCY,
     "binary_labels": [True, True], "anonymized_physician_ids": ["p2", "p3"]},
    {"prompt": P2, "completion": "Usually yes; rest and drink water.", "rubric": R3, "category": HEDGING,
     "binary_labels": [False], "anonymized_physician_ids": ["p3"]},
]
# Grader against each physician label, pairs (grader, physician):
#   record 1: (T,T) (T,F) (T,T)   record 2: (F,F) (F,T)   record 3: (T,T) (T,T)   record 4: (T,F)
#   TP = 4, FP = 2, FN = 1, TN = 1 (8 pairs).
#   precision_pos = 4/6, recall_pos = 4/5, f1_pos = 2(2/3)(4/5)/(2/3 + 4/5) = (16/15)/(22/15) = 8/11
#   precision_neg = 1/2, recall_neg = 1/3, f1_neg = 2(1/2)(1/3)/(1/2 + 1/3) = (1/3)/(5/6) = 2/5
#   f1_balanced = (8/11 + 2/5)/2 = 31/55
# By category: emergency (records 1, 3): TP 4, FP 1: precision_pos 4/5, recall_pos 1, f1_pos 8/9; no pair where
#   the grader said not met, so precision_neg and f1_neg and f1_balanced are None, recall_neg = 0/1.
#   hedging (records 2, 4): TN 1, FN 1, FP 1: precision_pos 0/1, recall_pos 0/1, f1_pos 0; precision_neg 1/2,
#   recall_neg 1/2, f1_neg 1/2; f1_balanced 1/4.
# Physicians, each against the others on the same record (leave one out; record 4 has no other label):
#   p1: (T,F) (T,T) (F,T): TP 1, FP 1, FN 1: f1_pos 1/2; precision_neg 0/1, recall_neg 0/1: f1_neg 0; balanced 1/4
#   p2: (F,T) (F,T) (T,F) (T,T): TP 1, FP 1, FN 2: precision_pos 1/2, recall_pos 1/3, f1_pos 2/5; f1_neg 0; balanced 1/5
#   p3: (T,T) (T,F) (T,T): TP 2, FP 1: precision_pos 2/3, recall_pos 1, f1_pos 4/5; precision_neg None: balanced None
GRADER = [True, False, True, True]


def test_pairwise_macro_f1_hand_worked():
    model = rater_metrics(GRADER, [r["binary_labels"] for r in META], [r["category"] for r in META])
    overall = model["overall"]
    assert {k: v["value"] for k, v in overall.items()} == pytest.approx(
        {"precision_pos": 4 / 6, "precision_neg": 1 / 2, "recall_pos": 4 / 5, "recall_neg": 1 / 3,
         "f1_pos": 8 / 11, "f1_neg": 2 / 5, "f1_balanced": 31 / 55,
         "precision_balanced": (4 / 6 + 1 / 2) / 2, "recall_balanced": (4 / 5 + 1 / 3) / 2})
    assert [overall[k]["n"]
            for k in ("precision_pos", "recall_pos", "f1_pos", "f1_neg", "f1_balanced")] == [6, 5, 7, 4, 8]
    emergency, hedging = model["by_group"][EMERGENCY], model["by_group"][HEDGING]
    assert (emergency["f1_pos"]["value"], emergency["recall_neg"]["value"]) == (pytest.approx(8 / 9), 0.0)
    assert emergency["precision_neg"] == {"value": None, "n": 0} and emergency["f1_balanced"]["value"] is None
    assert (hedging["f1_pos"]["value"], hedging["f1_neg"]["value"], hedging["f1_balanced"]["value"]) == (0.0, 0.5, 0.25)
    physicians = leave_one_out([list(zip(r["anonymized_physician_ids"], r["binary_labels"])) for r in META],
                               [r["category"] for r in META])
    balanced = {p: m["overall"]["f1_balanced"]["value"] for p, m in physicians.items()}
    assert balanced == {"p1": 0.25, "p2": pytest.approx(0.2), "p3": None}
    assert physicians["p3"]["overall"]["f1_pos"]["value"] == pytest.approx(4 / 5)
    assert flatten(model, "pairwise_model")["pairwise_model_f1_balanced"]["value"] == pytest.approx(31 / 55)
    assert f"{HEDGING}: pairwise_model_f1_neg" in flatten(model, "pairwise_model")


def test_healthbench_meta_eval_test_case():
    # simple-evals healthbench_meta_eval_test.py: grader T, F, T against physicians [T, T, F], [T, F], [F].
    model = rater_metrics([True, False, True], [[True, True, False], [True, False], [False]], ["a", "a", "b"])
    overall = model["overall"]
    assert (overall["precision_pos"], overall["precision_neg"]) == ({"value": 2 / 4, "n": 4}, {"value": 1 / 2, "n": 2})
    assert (overall["recall_pos"], overall["recall_neg"]) == ({"value": 2 / 3, "n": 3}, {"value": 1 / 3, "n": 3})
    assert model["by_group"]["b"]["precision_pos"] == {"value": 0.0, "n": 1}
    assert model["by_group"]["b"]["f1_pos"]["value"] is None and model["by_group"]["b"]["f1_balanced"]["value"] is None
    assert pair_metrics([])["f1_balanced"] == {"value": None, "n": 0}


def meta_grader(request: FakeRequest) -> str:
    met = "(always met)" in request.last_user_message
    return json.dumps({"explanation": "The fake grader meets the criteria that say so.", "criteria_met": met})


def test_meta_eval_import_labels_and_agreement(tmp_path: Path, fake_server, capsys):
    source = write_jsonl(tmp_path / "meta.jsonl", META)
    suite = tmp_path / "meta"
    assert main(["import", "healthbench-meta", str(source), "--out", str(suite)]) == 0
    assert "4 meta-eval records" in capsys.readouterr().out and main(["validate", "--config",
                                                                      str(suite / "bilan.yaml")]) == 0
    _, loaded, answers = load_project(suite / "bilan.yaml")
    assert len(loaded.cases) == 3 and len(answers["meta-eval"]) == 3        # distinct (prompt, completion) pairs
    first = next(c for c in loaded.cases if c.conversation[0].content == P1[0]["content"]
                 and len(loaded.criteria[c.id]) == 2)
    assert [(c.text, c.points, c.tags) for c in loaded.criteria[first.id]] == [(R1, 1, (EMERGENCY,)),
                                                                               (R2, 1, (HEDGING,))]
    labels = {p.stem: [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines()]
              for p in (suite / "labels").glob("*.jsonl")}
    assert sorted(labels) == ["p1", "p2", "p3"] and sum(map(len, labels.values())) == 8
    assert set(labels["p1"][0]) >= {"target", "case_id", "sample", "criterion", "met", "reviewer"}
    assert labels["p1"][0] | {"answer_sha256": None} == {"target": "meta-eval", "case_id": first.id, "sample": 0,
                                                         "criterion": "c01",
                                                          "met": True, "reviewer": "p1", "answer_sha256": None}

    fake_server.responder = meta_grader
    use_fake_grader(suite, fake_server)
    assert main(["run", "--config", str(suite / "bilan.yaml"), "--out", str(suite / "run")]) == 0
    figures = meta_agreement(suite / "run", suite / "labels")
    assert figures["score"] == pytest.approx(31 / 55) and (figures["items"], figures["ungraded"]) == (4, 0)
    assert figures["model"]["by_group"][HEDGING]["f1_balanced"]["value"] == 0.25
    assert {p: m["overall"]["f1_balanced"]["value"]
            for p, m in figures["physicians"].items()} == {"p1": 0.25, "p2": pytest.approx(0.2), "p3": None}


def test_a_physician_who_labels_one_criterion_twice_keeps_the_first_label(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    again = dict(META[0], binary_labels=[False], anonymized_physician_ids=["p1"])
    write_jsonl(tmp_path / "meta.jsonl", [META[0], again])
    assert main(["import", "healthbench-meta", "meta.jsonl", "--out", "m"]) == 0
    col = json.dumps(again).find('"binary_labels":') + 1
    assert f"meta.jsonl:2:{col}: warning: binary_labels: physician p1 already labelled this criterion differently; " \
           "the first label is kept" in capsys.readouterr().err
    assert [json.loads(l)["met"]
            for l in (tmp_path / "m" / "labels" / "p1.jsonl").read_text(encoding="utf-8").splitlines()] == [True]


def test_meta_eval_bad_records_are_located(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    short = dict(META[0], anonymized_physician_ids=["p1"])
    odd = dict(META[1], category="cluster:cardiology_pain")
    write_jsonl(tmp_path / "meta.jsonl", [META[0], short, odd, "not json"])
    assert main(["import", "healthbench-meta", "meta.jsonl", "--out", "m"]) == 2
    col = lambda record, key: json.dumps(record).find(f'"{key}":') + 1
    assert capsys.readouterr().err.splitlines() == [
        f"meta.jsonl:2:{col(short, 'anonymized_physician_ids')}: error: anonymized_physician_ids: expected one "
        "physician id per label (3)",
        f'meta.jsonl:3:{col(odd, "category")}: error: category: "cluster:cardiology_pain" names no HealthBench theme; '
        'expected cluster:<theme>_...',
        "meta.jsonl:4:1: error: invalid JSON: Expecting value; expected one JSON object per line",
        "3 error(s) in 1 file(s)"]
