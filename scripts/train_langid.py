"""Train the language identifier's character n-gram models from the public corpora in fairness/corpus/.

Reads every `fairness/corpus/<form>.jsonl` row with `"split": "train"` (never the dev rows, which measure the
model), and writes `harness/assets/langid.json.gz`: for each script, a multinomial naive Bayes model over
word-padded character n-grams (orders 1-4), add-k smoothed, rare n-grams pruned.

    python scripts/train_langid.py            # writes harness/assets/langid.json.gz and prints its size
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Which corpus forms train which label of which script's model. Code-switched forms are not trained on: the
# identifier finds mixing word by word.
LABELS = {"Latn": {"ary-Latn": ["ary-Latn"], "zgh-Latn": ["zgh-Latn"], "fr": ["fr"], "en": ["en"]},
          "Arab": {"ar": ["ar"], "ary-Arab": ["ary-Arab"]}}
ORDERS = (1, 2, 3, 4)
SMOOTHING = 0.5
MIN_COUNT = 2
MAX_GRAMS = 12000


def read_train(corpus: Path) -> dict[str, list[str]]:
    """Training texts by corpus form."""
    out: dict[str, list[str]] = {}
    for path in sorted(corpus.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("split") == "train":
                    out.setdefault(row["form"], []).append(row["text"])
    return out


def train(texts: dict[str, list[str]]) -> dict:
    """The model for every script whose labels all have training text."""
    from harness.langid import _grams, prepare
    model = {}
    for script, labels in LABELS.items():
        counts = {}
        for label, forms in labels.items():
            grams = Counter(g for form in forms for text in texts.get(form, ()) for g in _grams(prepare(text), ORDERS))
            counts[label] = grams
        if not all(counts.values()):
            missing = [label for label, grams in counts.items() if not grams]
            print(f"{script}: no training text for {', '.join(missing)}; model skipped")
            continue
        vocabulary = len(set().union(*counts.values()))
        table = {"labels": list(labels), "orders": list(ORDERS), "logprob": {}, "unseen": {}, "prior": {}}
        for label, grams in counts.items():
            total = sum(grams.values())
            denominator = total + SMOOTHING * vocabulary
            kept = [g for g, c in grams.most_common(MAX_GRAMS) if c >= MIN_COUNT]
            table["logprob"][label] = {g: round(math.log((grams[g] + SMOOTHING) / denominator), 3) for g in kept}
            table["unseen"][label] = round(math.log(SMOOTHING / denominator), 3)
            table["prior"][label] = 0.0          # uniform: the corpora's sizes say nothing about answers
        model[script] = table
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "fairness" / "corpus")
    parser.add_argument("--out", type=Path, default=ROOT / "harness" / "assets" / "langid.json.gz")
    args = parser.parse_args()
    texts = read_train(args.corpus)
    for form, rows in sorted(texts.items()):
        print(f"train {form}: {len(rows)} texts")
    model = train(texts)
    data = gzip.compress(json.dumps(model, ensure_ascii=False, sort_keys=True).encode(), mtime=0)
    args.out.write_bytes(data)
    print(f"wrote {args.out.relative_to(ROOT)} ({len(data) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
