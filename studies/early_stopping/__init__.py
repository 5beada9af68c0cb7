"""The early-stopping study: can `EarlyStopping` on MIR, HDR or NC1 stop training well?

`python -m studies.early_stopping` (`studies.early_stopping.cli`) trains the
conv net of `studies.fashion_mnist` for a fixed number of epochs per seed
(`studies.early_stopping.cell`), keeps one record per run in `records/`,
replays Keras' `EarlyStopping` on the recorded logs (`replay`) and writes the
report (`table`, `figure`) into docs/early_stopping.md. The measures are those
of arXiv 2409.16767.

Example:

```bash
python -m studies.early_stopping --report
```
"""
