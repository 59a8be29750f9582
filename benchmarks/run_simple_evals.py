"""Run openai/simple-evals' own command line (simple_evals.main) from a clone, on a local HealthBench file.

    python benchmarks/run_simple_evals.py CLONE DATA.jsonl --eval=healthbench --model=gpt-4.1 --n-threads=32

The clone is imported as a package (its modules use relative imports, as `python -m simple-evals.simple_evals`
does); the only change is the module constant holding the data file's address, pointed at DATA.jsonl (blobfile
reads local paths). The OpenAI clients it makes read OPENAI_BASE_URL and OPENAI_API_KEY from the environment.
"""
import importlib
import sys
from pathlib import Path

clone, data, *rest = sys.argv[1:]
clone_path = Path(clone).resolve()
sys.path.insert(0, str(clone_path.parent))
healthbench = importlib.import_module(f"{clone_path.name}.healthbench_eval")
healthbench.INPUT_PATH = data
simple_evals = importlib.import_module(f"{clone_path.name}.simple_evals")
sys.argv = ["simple_evals", *rest]
simple_evals.main()
