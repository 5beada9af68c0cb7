"""The grokking study: do the collapse measures move before test accuracy?

`python -m studies.grokking` (`studies.grokking.cli`) runs each (run, seed)
of the grid with `python -m recipes.grokking`, keeps one record per finished
run in `records/` (its results.json and history.csv), and writes the table of
steps (`studies.grokking.table`) into docs/grokking.md.

Example:

```bash
python -m studies.grokking --report
```
"""
