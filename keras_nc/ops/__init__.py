"""Matrix information theory on `keras.ops`: Gram matrices, entropies, MI, MIR, HDR.

Every function here is pure, backend-agnostic (TensorFlow, JAX, PyTorch through
`keras.ops`), batched over leading dimensions and safe under `jit_compile`.
Metrics, losses and recipes call these functions; the mathematics lives here
once, in modules split by topic:

- `keras_nc.ops.entropy`: Gram matrices, matrix and feature entropy (and,
  re-exported, `keras_nc.ops.information`: MI, MIR, HDR);
- `keras_nc.ops.statistics`: mergeable per-class statistics of features (and,
  re-exported, `keras_nc.ops.class_sums`: one step's terms of accumulated
  statistics);
- `keras_nc.ops.pairing`: the two pairings of MIR and HDR, re-exported from
  `keras_nc.ops.sample_head` (per batch) and `keras_nc.ops.class_pairing`
  (per epoch);
- `keras_nc.ops.chance`: the chance level of the class pairing;
- `keras_nc.ops.collapse`: the classic Neural Collapse measures (NC1-NC4, CDNV);
- `keras_nc.ops.cma`: the Cross-Modal Alignment entropy and its dispatcher
  (layouts in `keras_nc.ops.cma_layouts` and `keras_nc.ops.cma_grams`, cost
  model in `keras_nc.ops.cma_plan`);
- `keras_nc.ops.rank`: representation rank (RankMe, alpha-ReQ), reading the
  spectra of `keras_nc.ops.rank_spectrum`;
- `keras_nc.ops.guards`: the argument and value checks, for the layers built
  on these functions.

See the Concepts page of the documentation for the definitions.

Numerics, in one place:

- Computation happens in float32 at least: float16 and bfloat16 inputs are cast
  up, float64 inputs stay float64.
- Eigenvalues below a relative tolerance (`tol * max eigenvalue`) are treated as
  exact zeros, so the tiny negative or repeated eigenvalues that `eigh` returns
  for rank-deficient matrices give neither NaN values nor NaN gradients.
- Rows are normalised by `max(||z||, eps * max ||z||)`: zero rows stay zero and
  keep finite gradients.
- Degenerate denominators return documented, finite values (see `mir`, `hdr`).
- Bad input: shapes, ranks and dtypes are checked whenever a function is
  called. Values (NaN or infinite entries, labels outside `[0, C)`, fractional
  float labels) raise a `ValueError` naming the argument in eager calls. Inside
  a compiled function (`jax.jit`, `tf.function`, `torch.compile`, the train step
  of `fit`) no data-dependent error can be raised: there the results that depend
  on the bad values are NaN, the same signal a diverged loss gives
  (`keras.callbacks.TerminateOnNaN` stops on it), and the inputs are replaced by
  zeros first so that no backend kernel sees them. One guard implements this
  (`labelled_batch` for labelled inputs), so a training step validates its labels
  once however many measures read them.
"""

from keras_nc.ops._guards import LabelledBatch, labelled_batch
from keras_nc.ops._spectral import normalize_rows
from keras_nc.ops.chance import class_pairing_chance
from keras_nc.ops.cma import cma_entropy
from keras_nc.ops.collapse import ncc_agreement, neural_collapse_measures
from keras_nc.ops.entropy import (
    effective_rank,
    feature_entropy,
    gram,
    hdr,
    information_ratios,
    matrix_entropy,
    matrix_mutual_information,
    mir,
    ratios_from_entropies,
)
from keras_nc.ops.pairing import (
    class_pairing_grams,
    class_pairing_hdr,
    class_pairing_ratios,
    sample_head_entropies,
    sample_head_grams,
    sample_head_ratios,
)
from keras_nc.ops.rank import alpha_req, alpha_req_of_gram, rank_me, rank_me_of_gram
from keras_nc.ops.statistics import class_means, class_statistics, scale_exponent

__all__ = [
    "LabelledBatch",
    "alpha_req",
    "alpha_req_of_gram",
    "class_means",
    "class_pairing_chance",
    "class_pairing_grams",
    "class_pairing_hdr",
    "class_pairing_ratios",
    "class_statistics",
    "cma_entropy",
    "effective_rank",
    "feature_entropy",
    "gram",
    "hdr",
    "information_ratios",
    "labelled_batch",
    "matrix_entropy",
    "matrix_mutual_information",
    "mir",
    "ncc_agreement",
    "neural_collapse_measures",
    "normalize_rows",
    "rank_me",
    "rank_me_of_gram",
    "ratios_from_entropies",
    "sample_head_entropies",
    "sample_head_grams",
    "sample_head_ratios",
    "scale_exponent",
]
