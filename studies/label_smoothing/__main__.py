"""`python -m studies.label_smoothing`: see `studies.label_smoothing.cli` and `--help`."""

import sys

from studies.label_smoothing.cli import main

main(sys.argv[1:])
