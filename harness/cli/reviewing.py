"""The commands that read runs for people: the grader's attack and agreement figures, clinicians' review sheets,
the browser view, comparisons and the CI gate."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from ..errors import InputError, Problem
from ..load import display
from .common import _cache, _existing_run, _run_dir, load, resolve_keys


def cmd_attack(args: argparse.Namespace) -> int:
    """Grade the adversarial answers with the configured grader and report how often it is fooled."""
    from ..attack import attack_setup, fooled, load_attacks
    from ..run import RunOptions, run
    from ..store import read_results, write_json
    config, suite, _ = load(args)
    attacks = load_attacks(Path(args.answers), suite)
    config, suite, answers = attack_setup(config, suite, attacks)
    keys = resolve_keys(config, dict(os.environ))
    out = Path(args.out) if args.out else _run_dir(config, None).with_name("attack-" + _run_dir(config, None).name)
    options = RunOptions(cache=_cache(args, dict(os.environ)), max_error_rate=1.0)
    try:
        run(config, suite, answers, out, keys, options, argv=sys.argv)
    finally:
        if options.cache is not None:
            options.cache.close()
    grader = config.grader.provider + (f" {config.grader.model}" if config.grader.model else "")
    result = fooled(read_results(out), attacks) | {"grader": grader}
    write_json(out / "attack.json", result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"grader {result['grader']}: {result['attacks']} adversarial answers (results in {out})")
    for key, cell in sorted(result["by"].items()):
        rate = f"{100 * cell['rate']:.0f}%" if cell["rate"] is not None else "n/a"
        print(f"  {key.replace('|', ' / '):32} fooled {cell['fooled']:3} of {cell['judged']:3} judged ({rate}), "
              f"{cell['ungraded']} not graded")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    """Report how far the run's grader agrees with the clinicians' labels stored beside it."""
    from ..agreement_report import agreement_summary, label_folders, write_agreement
    run_dir = _existing_run(args.run_dir)
    folders = label_folders(run_dir, args.labels or ())
    summary = agreement_summary(run_dir, folders)
    if not summary["labelled_items"] and not summary["model_vs_checks"]:
        where = ", ".join(map(str, folders)) if folders else "labels/ in the run or beside its bilan.yaml"
        raise InputError([Problem(display(run_dir / "labels"), 0, 0,
                                  f"no clinician labels for this run's answers and no compare_checks verdicts (looked "
                                  f"in {where}); expected labels from `bilan review import` or `bilan import "
                                  "healthbench-meta` (or --labels DIR), or a run graded with compare_checks: true")])
    page = write_agreement(run_dir, summary)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    g = summary["grader"]
    show = lambda c: (f"{c['value']:.3f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
                      if c["value"] is not None and c["ci_low"] is not None else "n/a")
    print(f"{summary['labelled_items']} labelled answer-criterion pairs, {len(summary['reviewers'])} reviewer(s); "
          f"grader: macro F1 {show(g['overall']['macro_f1'])}, kappa {show(g['overall']['kappa'])}, "
          f"balanced accuracy {show(g['overall']['balanced_accuracy'])}")
    for name, c in [*g["by_language"].items(), *g["by_category"].items()]:
        print(f"  {name}: macro F1 {show(c['macro_f1'])} over {c['pairs']} pairs")
    for lang, c in summary["model_vs_checks"].items():
        print(f"  model grader and checks agree on {100 * c['rate']:.1f}% of {c['n']} checked criteria ({lang})")
    print(f"{len(summary['disagreements'])} to adjudicate; report: {page}")
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    """Write a blinded review sheet for clinicians."""
    from ..review import export_review
    run_dir = _existing_run(args.run_dir)
    shown = lambda done, total: print(f"  {done:,}/{total:,} rows written to {args.out}", file=sys.stderr, flush=True)
    key = export_review(run_dir, Path(args.out), args.seed, args.sample, args.show_grader, progress=shown)
    print(f"wrote {args.out}: {len(key['rows'])} rows for review (sheet {key['sheet']}; systems blinded as "
          f"{', '.join(sorted(key['systems'].values()))}; key kept in {run_dir / 'review'})")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    """Store a filled review sheet's labels beside the run."""
    from ..review import import_review
    out, count = import_review(Path(args.file), _existing_run(args.run), args.reviewer)
    print(f"stored {count} labels from {args.reviewer} in {out}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve run directories in the browser (grid, case pages, labelling) until interrupted."""
    from ..view.app import prepare
    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None     # read here only, kept nowhere
    served = prepare([Path(p) for p in args.runs], args.host, args.port, passphrase, args.passphrase_env)
    if served.warning:
        print(served.warning, file=sys.stderr)
    print(f"bilan view: open {served.link} (Ctrl-C to stop)", flush=True)
    return served.serve()


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare targets across runs (or within one run) and write the comparison report."""
    from ..analyze import AnalysisOptions
    from ..decide import CompareOptions, compare, compare_inputs
    from ..report import never_event_answers
    from ..report_compare import headline, write_comparison
    contenders, reasons = compare_inputs([Path(d) for d in args.run_dirs], args.target or ())
    if reasons:
        raise InputError([Problem(display(Path(args.run_dirs[0])), 0, 0, f"cannot compare: {r}") for r in reasons])
    analysis = AnalysisOptions(reference=args.reference, never_threshold=args.never_threshold)
    data = compare(contenders, CompareOptions(seed=contenders[0].manifest.get("seed", 0), resamples=args.resamples,
                                              analysis=analysis))
    listed = [dict(a, target=c.label) for c in contenders for a in never_event_answers(c.rows, args.never_threshold)]
    beside = Path(args.run_dirs[0]).resolve().parent / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out = Path(args.out) if args.out else beside
    write_comparison(out, data, listed)
    print(" ".join(headline(data)))
    for warning in data["coverage_warnings"]:
        print(f"warning: {warning['message']}")
    print(f"comparison: {out / 'compare.html'} (and compare.md, compare.json)")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Gate a candidate run against a baseline: exit 1 on a significant regression, 2 when they cannot be compared."""
    from ..decide import GateOptions, gate, gate_inputs, incomparable
    from ..report_compare import gate_markdown, write_gate
    base, cand, reasons = gate_inputs(Path(args.baseline), Path(args.candidate), args.target)
    if reasons or base is None or cand is None:
        write_gate(incomparable(reasons), args.markdown, args.junit, args.json)
        for reason in reasons:
            print(f"bilan gate: cannot compare: {reason}", file=sys.stderr)
        return 2
    options = GateOptions(max_drop=args.max_drop, alpha=args.alpha, seed=base.manifest.get("seed", 0),
                          never_threshold=args.never_threshold, reference=args.reference,
                          min_coverage=args.min_coverage)
    result = gate(base, cand, options)
    write_gate(result, args.markdown, args.junit, args.json)
    print(gate_markdown(result), end="")
    return result["exit_code"]
