"""The semi-supervised study: does the MIR/HDR term help FreeMatch on Fashion-MNIST?

`python -m studies.semi_supervised` (`studies.semi_supervised.cli`) runs the
grid of `python -m recipes.semi_supervised` cells (`cells`), keeps one record
per finished cell in `records/` (and the reruns of docs/semi_supervised.md's
"Reruns" paragraph in `records-rerun/`), and writes the report (`tables`,
`figure`) into docs/semi_supervised.md.

Example:

```bash
python -m studies.semi_supervised --report
```
"""
