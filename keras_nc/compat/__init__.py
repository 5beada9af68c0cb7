"""The Keras private names keras-nc relies on, in one place.

Keras offers no public hook for some of what keras-nc needs. Each such use
lives here, with a test in `tests/compat/` that fails loudly when a
Keras release changes it, so that a Keras upgrade names what it broke.

`keras_nc.compat.metrics` (Keras' metric internals, re-exported here):

- `MetricsList`: Keras' callbacks that watch a metric (`EarlyStopping`,
  `ModelCheckpoint`, `ReduceLROnPlateau` in `mode="auto"`) read a metric's
  direction only from metrics inside Keras' metric containers
  (`keras.src.trainers.compile_utils.MetricsList` or `CompileMetrics`) listed in
  `model.metrics`; `CollapseClassifier` lists its collapse metrics in one.
- `set_metric_direction`, `metric_direction`: the attribute those callbacks
  read (`Metric._direction`, `"up"` or `"down"`), as Keras' own metrics set it.
- `CompileMetrics`: the container of the metrics passed to `compile`, whose
  sub-metrics Keras flattens into `evaluate`'s list.
- `untrack`: stops a layer or metric listing a metric or variable it was
  assigned (`Layer._tracker.untrack`; Keras has no public way).
- `scatter_add`, `add_to`, `add_scaled` (`in_place_update`): metric state
  updated in place through the backend variable behind a Keras variable
  (`torch.nn.Parameter`, `tf.Variable`) instead of Keras' `assign`;
  `rescale_under_cond`: whether `keras.ops.cond` skips work (JAX).

`keras_nc.compat.pruning` (every layer of a model, for `keras_nc.pruning`):
`flatten_layers` (Keras' private `Layer._flatten_layers`; the public
`Model.layers` misses layers nested in plain layers).

`keras_nc.compat.distribute` (how the backends distribute a step; no Keras
private names): `replicas_in_sync`, `scale_loss_for_replicas`,
`mean_over_replicas` (TensorFlow's `tf.distribute` replicas, as Keras' losses
and metrics see them) and `batch_distribution` (Keras' distribution API, which
only JAX runs).

`keras_nc.compat.linalg` (how the backends run linear algebra, and the
backends' private names it takes; re-exported here):

- `tensorflow_xla_tracing`, `tensorflow_xla_eigenvalues`: TensorFlow's XLA
  `eigh` stops its Jacobi sweeps at `1e-6` of the matrix norm; inside an XLA
  trace RankMe asks XLA's own op for the dtype's precision (TensorFlow
  private modules: `control_flow_util`, `tf2xla`).
- `eigvalsh`: the eigenvalues of symmetric matrices without the eigenvectors
  that `keras.ops.eigh` computes (a third to a half of the work; LAPACK's
  `syevd` with `jobz='N'`): `torch.linalg.eigvalsh` on PyTorch; on TensorFlow
  `tf.linalg.eigvalsh`, or NumPy's LAPACK for large concrete CPU input that no
  `GradientTape` records (`host_eigenvalues_apply`; `tape_is_recording`:
  TensorFlow's private `eager.record.could_possibly_record`); on JAX NumPy's
  LAPACK for concrete CPU input (JAX's own `eigvalsh` computes the
  eigenvectors too) and `eigh` under tracing.
- `decomposes_one_matrix_per_call` (for `keras.ops.eigh`/`svd` of a
  batch): JAX's batched CPU kernels can deadlock on XLA's thread pool, so
  `keras_nc.ops` decomposes one matrix per call there.
- `eager_ops_compile_per_shape` (for eager `keras.ops` calls): JAX compiles
  each eager op for every new shape, so the CMA entropy's eager layouts,
  sized by the data, are not taken there.
- `compiled_branches_on_data` (for `keras.ops.switch` in a compiled step):
  False under `torch.compile`, which cannot trace a data-dependent branch.
- `gradient_may_be_taken` (for `keras.ops.eigh`'s eigenvectors): False only
  for eager PyTorch tensors that no gradient will be asked of.
- `eigh_call_cost`, `gathers_class_grams`: how the backends execute, for the
  choice between exact paths of equal results (`keras_nc.ops.pairing`):
  the cost of one eigendecomposition call and the elementwise ops around it
  (eager PyTorch dispatches each op from Python, a TensorFlow graph from its
  executor), and whether gathering an
  n x n Gram from a smaller class Gram beats the n x n product
  (TensorFlow's gathers and its oneDNN product of a 100-row matrix cost
  more; measured with `benchmarks/ops.py`).
- `eager_version`: a token that changes whenever an eager PyTorch tensor is
  written in place (its private `_version` counter), so a value derived from
  variables can be reused while they are unchanged; None elsewhere.

`keras_nc.compat.training` (how `CollapseClassifier` hooks into Keras'
training loop; re-exported here; tests in `tests/compat/test_training.py`):
`untracked_setattr` (an attribute Keras' automatic tracking does not
collect), `portable_optimizer_config` (PyTorch saves optimizers under
`keras.src.backend...`), `LocalBatchSymbolicBuild` (Keras' private
`_maybe_symbolic_build` of the TensorFlow trainer, across workers),
`spans_workers`, `jax_on_cpu`, `tensorflow_on_cpu`, `one_blas_thread`.

`keras_nc.compat.backend` (the one reader of `keras.backend.backend()`):
`backend_name`, `is_backend`, `values_known` (whether a tensor's values are
known now, not traced by `jax.jit`, `tf.function` or `torch.compile`) and
`widest_float` (float64, or float32 on JAX without `jax_enable_x64`).
"""

from keras_nc.compat.linalg import EIGH_CALL_COST as EIGH_CALL_COST
from keras_nc.compat.linalg import GATHERS_CLASS_GRAMS as GATHERS_CLASS_GRAMS
from keras_nc.compat.linalg import HOST_EIGVALSH_MIN_SIZE as HOST_EIGVALSH_MIN_SIZE
from keras_nc.compat.linalg import compiled_branches_on_data as compiled_branches_on_data
from keras_nc.compat.linalg import decomposes_one_matrix_per_call as decomposes_one_matrix_per_call
from keras_nc.compat.linalg import eager_ops_compile_per_shape as eager_ops_compile_per_shape
from keras_nc.compat.linalg import eager_version as eager_version
from keras_nc.compat.linalg import eigh_call_cost as eigh_call_cost
from keras_nc.compat.linalg import eigvalsh as eigvalsh
from keras_nc.compat.linalg import gathers_class_grams as gathers_class_grams
from keras_nc.compat.linalg import gradient_may_be_taken as gradient_may_be_taken
from keras_nc.compat.linalg import host_eigenvalues_apply as host_eigenvalues_apply
from keras_nc.compat.linalg import tape_is_recording as tape_is_recording
from keras_nc.compat.linalg import tensorflow_xla_eigenvalues as tensorflow_xla_eigenvalues
from keras_nc.compat.linalg import tensorflow_xla_tracing as tensorflow_xla_tracing
from keras_nc.compat.metrics import DIRECTIONS as DIRECTIONS
from keras_nc.compat.metrics import CompileMetrics as CompileMetrics
from keras_nc.compat.metrics import MetricsList as MetricsList
from keras_nc.compat.metrics import metric_direction as metric_direction
from keras_nc.compat.metrics import set_metric_direction as set_metric_direction
from keras_nc.compat.metrics import untrack as untrack
from keras_nc.compat.pruning import flatten_layers as flatten_layers
from keras_nc.compat.training import LocalBatchSymbolicBuild as LocalBatchSymbolicBuild
from keras_nc.compat.training import jax_on_cpu as jax_on_cpu
from keras_nc.compat.training import one_blas_thread as one_blas_thread
from keras_nc.compat.training import portable_optimizer_config as portable_optimizer_config
from keras_nc.compat.training import spans_workers as spans_workers
from keras_nc.compat.training import tensorflow_on_cpu as tensorflow_on_cpu
from keras_nc.compat.training import untracked_setattr as untracked_setattr
