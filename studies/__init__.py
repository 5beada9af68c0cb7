"""Studies: resumable grids of recipe runs whose records and reports live in the repository.

A study plans cells (one `python -m recipes.<recipe>` run each), runs the
missing ones in a pool of processes (`studies.driver`), keeps one JSON record
per finished cell under `studies/<study>/records/`, and writes its tables
(and figures) between the `<!-- experiment:start -->` and
`<!-- experiment:end -->` markers of a docs page (`studies.docs`). The report
is a function of the committed records only: `python -m studies.<study>
--report` rewrites it without training.

Studies (not part of the `keras-nc` wheel):

- `studies.semi_supervised`: does the MIR/HDR term of arXiv 2409.16767 help
  FreeMatch on Fashion-MNIST? (`docs/semi_supervised.md`)
- `studies.grokking`: do the collapse measures move before test accuracy?
  (`docs/grokking.md`)
- the phenomena studies, on one small conv net and fixed Fashion-MNIST subsets
  (`studies.fashion_mnist`, with the small-sample statistics of
  `studies.statistics`): `studies.mode_connectivity` (linear mode
  connectivity, `docs/mode_connectivity.md`), `studies.pruning`
  (`docs/pruning.md`), `studies.label_smoothing` (`docs/label_smoothing.md`)
  and `studies.early_stopping` (`docs/early_stopping.md`).

Example:

```bash
python -m studies.semi_supervised --dry-run   # every cell's command, the finished ones marked
python -m studies.semi_supervised --report    # the docs' tables from the committed records
python -m studies.grokking --report
```
"""
