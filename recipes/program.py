"""What every recipe's command line shares: help, seed, output folder, banner, results.

A recipe's `main(argv)` parses its options with `HelpFormatter`, calls
`start(args)` (seeds everything, creates the output folder, prints a one-line
banner naming the backend), trains with Keras' own progress bars, and ends with
`write_results(folder, results)`. `results.json` is strict JSON: a non-finite
number (a NaN measure of a diverged run, an infinite ratio) is written as
`null`, which `jq`, JavaScript's `JSON.parse` and pandas read, where Python's
default `NaN` is rejected.

Example:

>>> import json, math, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = write_results(folder, {"mir": math.nan, "accuracy": 0.5})
>>> json.loads(open(path).read(), parse_constant=lambda name: 1 / 0)
{'mir': None, 'accuracy': 0.5}
"""

import argparse
import json
import math
import os

import keras
import numpy as np

RESULTS_FILE = "results.json"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: ...)` unless the help text already says it or there is none."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def seed_everything(seed, deterministic=False):
    """Seeds Python, NumPy and the backend; with `deterministic`, fixes the kernels too.

    A seed fixes the initial weights, the label draw and the data order, but a
    rerun still differs: TensorFlow's CPU kernels and the random layers of a
    parallel `tf.data` map run on threads whose timing changes the order of
    floating-point sums and of random draws. `deterministic=True` makes a rerun
    bit-identical on the same machine and software, at some cost in speed:
    `tf.config.experimental.enable_op_determinism()` (the input pipelines are
    `tf.data` on every backend) and, on PyTorch,
    `torch.use_deterministic_algorithms(True)`; JAX's CPU kernels are
    deterministic already.

    Example:

    >>> import numpy as np
    >>> seed_everything(0)
    >>> first = np.random.rand()
    >>> seed_everything(0)
    >>> bool(np.random.rand() == first)
    True
    """
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def start(args, seed=None, deterministic=None):
    """Seeds, creates `args.output` and returns the backend's name.

    Args:
        args: the parsed options; `args.output` is the output folder, and
            `args.seed` (and `args.deterministic`, when present) are used
            unless `seed`/`deterministic` are given.
    """
    seed = getattr(args, "seed", 0) if seed is None else seed
    if deterministic is None:
        deterministic = bool(getattr(args, "deterministic", False))
    seed_everything(seed, deterministic=deterministic)
    os.makedirs(args.output, exist_ok=True)
    return keras.backend.backend()


def banner(*parts):
    """Prints the recipe's one-line summary, ending with the Keras backend."""
    text = ", ".join(str(part) for part in parts if part)
    print(f"{text}; {keras.backend.backend()} backend" if text else keras.backend.backend())


def json_safe(value):
    """`value` with NumPy scalars/arrays as Python numbers/lists, non-finite floats as None.

    >>> json_safe({"a": np.float32("nan"), "b": [1, np.inf], "c": np.arange(2)})
    {'a': None, 'b': [1, None], 'c': [0, 1]}
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:  # backend tensors and other numbers
        return json_safe(np.asarray(keras.ops.convert_to_numpy(value)).tolist())
    except Exception:
        return str(value)


def write_results(folder, results, name=RESULTS_FILE):
    """Writes `results` as strict JSON (non-finite numbers as `null`); returns the path."""
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
        f.write("\n")
    return path
