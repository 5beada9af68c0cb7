"""`python -m recipes.cifar`: see `recipes.cifar.train` and `--help`."""

from recipes.cifar.train import main

main()
