"""`python -m studies.semi_supervised`: see `studies.semi_supervised.cli` and `--help`."""

import sys

from studies.semi_supervised.cli import main

main(sys.argv[1:])
