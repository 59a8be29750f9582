"""Command line: the only package that reads the environment, prints, or exits. This module parses the arguments
and dispatches; `common.py` holds what the commands share, `running.py` and `reviewing.py` the commands."""
from __future__ import annotations

import argparse
import sqlite3
import sys
import traceback

from ..errors import InputError
from .common import _alpha, _dollars, _fraction, _positive, _print_problems, _seconds, _share, _shard, _workers
from .reviewing import (cmd_agreement, cmd_attack, cmd_compare, cmd_gate, cmd_review_export, cmd_review_import,
                        cmd_view)
from .running import cmd_batch, cmd_merge, cmd_report, cmd_run, cmd_status, cmd_validate


def _decision_parsers(sub) -> None:
    """The `compare` and `gate` subcommands."""
    p = sub.add_parser("compare", help="compare targets across runs, or within one run: an HTML and Markdown report")
    p.add_argument("run_dirs", nargs="+", help="run directories (one run with several targets is enough)")
    p.add_argument("--out", help="folder to write (default: compare-<timestamp> beside the first run)")
    p.add_argument("--target", action="append", help="compare only this target (repeatable)")
    p.add_argument("--reference", default="fr", help="language that parity gaps are measured against (default fr)")
    p.add_argument("--never-threshold", type=int, default=-8,
                   help="criteria worth this many points or fewer are never-events (default -8)")
    p.add_argument("--resamples", type=_positive, default=2000, help="bootstrap resamples (default 2000)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("gate", help="CI gate: exit 1 when the candidate run regresses against the baseline run")
    p.add_argument("--baseline", required=True, help="the baseline run directory (e.g. the main branch's)")
    p.add_argument("--candidate", required=True, help="the candidate run directory (e.g. the pull request's)")
    p.add_argument("--max-drop", type=_fraction, default=0.02, help="largest tolerated drop in a score (default 0.02)")
    p.add_argument("--alpha", type=_alpha, default=0.05,
                   help="significance level, one-sided, Holm-adjusted (default 0.05)")
    p.add_argument("--target", help="the target to gate when the runs have several")
    p.add_argument("--reference", default="fr",
                   help="language whose grading coverage the others are held against (default fr)")
    p.add_argument("--never-threshold", type=int, default=-8,
                   help="criteria worth this many points or fewer are never-events (default -8)")
    p.add_argument("--min-coverage", type=_share, default=0.95,
                   help="fail when fewer than this share of the paired answers are scored in both runs (default 0.95)")
    p.add_argument("--markdown", help="write a Markdown summary (for a pull-request comment) here")
    p.add_argument("--junit", help="write JUnit XML here")
    p.add_argument("--json", help="write the full result as JSON here")
    p.set_defaults(func=cmd_gate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="bilan",
                                     description="Evaluate health chatbots for Morocco, HealthBench style.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check the suite, rubrics, locale, config and answer files")
    p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
    p.add_argument("--cache-dir", help="parse cache folder: files unchanged since they were last read are not parsed "
                   "again (default: $BILAN_CACHE_DIR or the user cache folder)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the parse cache")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="generate answers, grade them, write the run directory and reports")
    p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
    p.add_argument("--out", help="run directory (default: <output>/<timestamp>)")
    p.add_argument("--resume", action="store_true", help="finish the run in --out: keep its results, do the rest")
    p.add_argument("--shard", type=_shard, help="run only slice i of n (e.g. 2/4); combine with `bilan merge`")
    p.add_argument("--workers", type=_workers, default="auto", help="processes sharing the work and each endpoint's "
                   "limits (default auto: one per core, at most 8; one without fork, i.e. off Linux)")
    p.add_argument("--cache-dir", help="response and parse cache folder (default: $BILAN_CACHE_DIR or the user cache "
                   "folder)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response and parse caches")
    p.add_argument("--max-error-rate", type=_share, default=0.5,
                   help="stop when more than this share of answers fail (default 0.5)")
    p.add_argument("--max-cost", type=_dollars,
                   help="refuse to start, or stop cleanly, before spending more than this many US dollars")
    p.add_argument("--allow-unpriced", action="store_true",
                   help="with --max-cost: let models that have no price in the config spend without being counted")
    p.add_argument("--dry-run", action="store_true",
                   help="print the calls, tokens and cost a run would need; call nothing")
    p.add_argument("--batch", action="store_true", help="send every openai and anthropic endpoint's calls through its "
                   "batch API (half price, up to 24 h; see README: Batch runs)")
    p.add_argument("--no-wait", action="store_true", help="batch runs: submit, then stop; finish later with --resume")
    p.add_argument("--poll", type=_seconds, default=5.0, help="batch runs: seconds between status reads at first "
                   "(default 5; each wait grows by half, up to 300)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="where a batch run stands, from its run directory (calls nothing)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_status)
    batch = sub.add_parser("batch", help="request files for an offline batch runner (vllm run-batch), and back")
    bsub = batch.add_subparsers(dest="batch_command", required=True)
    for name, text in (("export", "write RUN/requests/<endpoint>.jsonl in the OpenAI batch format"),
                       ("import", "take an OpenAI batch output file into the response cache")):
        p = bsub.add_parser(name, help=text)
        p.add_argument("run_dir")
        if name == "import":
            p.add_argument("file")
        p.add_argument("--config", default="bilan.yaml", help="run configuration (default: bilan.yaml)")
        p.add_argument("--cache-dir", help="response and parse cache folder")
        p.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_batch)
    p = sub.add_parser("attack-grader", help="measure how often the configured grader is fooled by adversarial answers")
    p.add_argument("--config", default="bilan.yaml",
                   help="run configuration whose grader is tested (default: bilan.yaml)")
    p.add_argument("--answers", default="cases/adversarial",
                   help="adversarial answers: a .jsonl file or a folder of them")
    p.add_argument("--out", help="run directory for the graded attacks")
    p.add_argument("--cache-dir", help="response and parse cache folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response and parse caches")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_attack)
    review = sub.add_parser("review", help="clinician review: export a blinded sheet, import the filled one")
    rsub = review.add_subparsers(dest="review_command", required=True)
    p = rsub.add_parser("export", help="write a blinded review sheet (.xlsx or .csv) of a run's answers and criteria")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="the sheet to write: .xlsx or .csv")
    p.add_argument("--sample", type=_positive, help="only this many rows, spread evenly over languages")
    p.add_argument("--seed", type=int, default=0, help="seed for blinding, shuffling and sampling (default 0)")
    p.add_argument("--show-grader", action="store_true", help="show the grader's verdict (hidden by default)")
    p.set_defaults(func=cmd_review_export)
    p = rsub.add_parser("import", help="store a filled review sheet's labels beside the run")
    p.add_argument("file")
    p.add_argument("--run", required=True, help="the run directory the sheet was exported from")
    p.add_argument("--reviewer", required=True, help="the reviewer's name, as it should appear in reports")
    p.set_defaults(func=cmd_review_import)
    p = sub.add_parser("agreement",
                       help="grader against clinicians' labels: macro F1, kappa, balanced accuracy by language")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--labels", action="append", metavar="DIR",
                   help="a folder of <reviewer>.jsonl labels (repeatable); default: RUN/labels, else labels/ beside "
                   "the run's bilan.yaml")
    p.set_defaults(func=cmd_agreement)
    p = sub.add_parser("merge", help="combine shard run directories into one run directory")
    p.add_argument("out", help="the merged run directory to write")
    p.add_argument("run_dirs", nargs="+", help="shard run directories")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("report", help="rebuild reports from a run directory (no model calls)")
    p.add_argument("run_dir")
    p.add_argument("--redact-answers", action="store_true",
                   help="write aggregates only (no answer, verdict reason or conversation) to --out, for sharing")
    p.add_argument("--out", help="with --redact-answers: the folder to write the shareable reports to")
    p.set_defaults(func=cmd_report)
    from ..view import add_arguments; add_arguments(sub, cmd_view)  # noqa: E702  (bilan view)
    from ..healthbench import register; register(sub)  # noqa: E702  (bilan import / export healthbench)
    _decision_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bilan` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        return _print_problems(err)
    except KeyboardInterrupt:
        print("interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as exc:     # disk full, read-only folder, permissions: the environment, not a bug
        where = f" ({getattr(exc, 'filename')})" if getattr(exc, "filename", None) else ""
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"bilan: cannot read or write a file{where}: {reason}. Results already written are kept; free space or "
              f"fix the folder, then finish with --resume.", file=sys.stderr)
        return 1
    except Exception as exc:  # the last line of defence: a clear message, a traceback only with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"bilan: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
                  file=sys.stderr)
        return 1
