"""The label-smoothing study: MIR, HDR and NC1 under label smoothing against their collapse values.

`python -m studies.label_smoothing` (`studies.label_smoothing.cli`) trains the
studies' conv net (`studies.fashion_mnist`) with label smoothing
`s in {0, 0.05, 0.1, 0.2, 0.3}` and seeds 0, 1, 2 (`studies.label_smoothing.cell`),
keeps one record per finished cell in `records/`, and writes the table
(`studies.label_smoothing.table`) into docs/label_smoothing.md and the figure
(`studies.label_smoothing.figure`) to docs/images/label_smoothing.png.

Example:

```bash
python -m studies.label_smoothing --report
```
"""
