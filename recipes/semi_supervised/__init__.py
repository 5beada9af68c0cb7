"""Semi-supervised recipe: supervised baseline, FixMatch, FreeMatch, with MIR/HDR terms."""
