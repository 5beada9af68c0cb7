"""The two pairings of features with the classifier head that MIR and HDR compare.

- Sample-head pairing (per batch, what the paper tracks and the regulariser
  optimises): the cosine Gram of the batch features against that of the head
  rows picked by the labels (`keras_nc.ops.sample_head`).
- Class pairing (per epoch, from accumulated class statistics): the Gram of
  the centred class means against that of the head rows
  (`keras_nc.ops.class_pairing`).

Both modules' names are re-exported here.
"""

from keras_nc.ops.class_pairing import class_pairing_grams, class_pairing_hdr, class_pairing_ratios
from keras_nc.ops.sample_head import (
    SampleHead,
    direct_sample_head,
    eigh_cost,
    entropies_by_size,
    sample_head_entropies,
    sample_head_entropies_of,
    sample_head_grams,
    sample_head_of,
    sample_head_ratios,
    sample_rows,
)

__all__ = [
    "SampleHead",
    "class_pairing_grams",
    "class_pairing_hdr",
    "class_pairing_ratios",
    "direct_sample_head",
    "eigh_cost",
    "entropies_by_size",
    "sample_head_entropies",
    "sample_head_entropies_of",
    "sample_head_grams",
    "sample_head_of",
    "sample_head_ratios",
    "sample_rows",
]
