"""The linear-mode-connectivity study: barriers and MIR/HDR/NC1 between two children.

`python -m studies.mode_connectivity` (`studies.mode_connectivity.cli`) trains,
for each seed in {0, 1, 2} and spawn epoch k in {0, 1, 4}, a parent
`studies.fashion_mnist.convnet(seed)` for k epochs and two children from it
with different data orders (`studies.mode_connectivity.cell`), evaluates the
children's segment with `keras_nc.paths.interpolation_path`, keeps one
record per finished cell in `records/`, and writes the table
(`studies.mode_connectivity.table`) into docs/mode_connectivity.md and the
figure (`studies.mode_connectivity.figure`) to docs/images/mode_connectivity.png.

Example:

```bash
python -m studies.mode_connectivity --report
```
"""
