"""`python -m recipes.grokking`: see `recipes.grokking.train` and `--help`."""

from recipes.grokking.train import main

main()
