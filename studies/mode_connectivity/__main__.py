"""`python -m studies.mode_connectivity`: see `studies.mode_connectivity.cli` and `--help`."""

import sys

from studies.mode_connectivity.cli import main

main(sys.argv[1:])
