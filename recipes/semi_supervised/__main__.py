"""`python -m recipes.semi_supervised`: see `recipes.semi_supervised.train` and `--help`."""

from recipes.semi_supervised.train import main

main()
