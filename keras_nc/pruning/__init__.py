"""Magnitude pruning of Keras models and the collapse measures along a sparsity path.

- `magnitude_prune`: a pruned copy of a model and its masks, with one
  magnitude threshold over all kernels (`scope="global"`; Frankle & Carbin
  2019, Blalock et al. 2020) or one per tensor (`scope="layer"`);
- `prunable_weights`: which weights it prunes (`include`);
- `prune_masks`: the masks of given arrays;
- `sparsity_path`, `plot_sparsity`: loss, accuracy and the measures of
  arXiv 2409.16767 of pruned copies, with optional fine-tuning.

`keras_nc.callbacks.KeepPruned` keeps the pruned weights at zero while a
pruned model trains, on every backend. See docs/pruning.md.

Example:

>>> import keras
>>> inputs = keras.Input((10,))
>>> model = keras.Model(inputs, keras.layers.Dense(5)(inputs))
>>> pruned, masks = magnitude_prune(model, 0.5)
>>> print(*(int((~mask).sum()) for mask in masks.values()))
25
"""

from keras_nc.pruning.magnitude import magnitude_prune, prunable_weights, prune_masks
from keras_nc.pruning.path import plot_sparsity, sparsity_path

__all__ = ["magnitude_prune", "plot_sparsity", "prunable_weights", "prune_masks", "sparsity_path"]
