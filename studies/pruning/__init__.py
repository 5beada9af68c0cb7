"""The pruning study: do MIR, HDR and NC1 degrade with accuracy under magnitude pruning?

`python -m studies.pruning` (`studies.pruning.cli`) trains the studies' conv
net (`studies.fashion_mnist`) once per seed, prunes it globally by magnitude
(`keras_nc.pruning`) at sparsities 0 to 0.95 with and without fine-tuning
(`studies.pruning.cell`), and writes the table (`studies.pruning.table`) into
docs/pruning.md and the figure (`studies.pruning.figure`) to
docs/images/pruning.png. The measures are those of arXiv 2409.16767.
"""
