"""`python -m studies.grokking`: see `studies.grokking.cli` and `--help`."""

import sys

from studies.grokking.cli import main

main(sys.argv[1:])
