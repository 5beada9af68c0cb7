"""`python -m recipes.clip`: see `recipes.clip.train` and `--help`."""

from recipes.clip.train import main

main()
