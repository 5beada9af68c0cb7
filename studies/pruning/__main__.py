"""`python -m studies.pruning`: see `studies.pruning.cli` and `--help`."""

import sys

from studies.pruning.cli import main

main(sys.argv[1:])
