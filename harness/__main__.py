"""python -m harness -> the bilan command."""
import sys

from .cli import main

sys.exit(main())
