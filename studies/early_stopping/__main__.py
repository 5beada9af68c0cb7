"""`python -m studies.early_stopping`: see `studies.early_stopping.cli` and `--help`."""

import sys

from studies.early_stopping.cli import main

main(sys.argv[1:])
