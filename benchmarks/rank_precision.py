"""Precision of `keras_nc.ops.rank_me` (and alpha-ReQ) in float32 against a float64 SVD.

Cases, the same float32 arrays on every backend (one subprocess per backend,
since Keras fixes its backend at import):

- `diag`: `diag([1] + [1e-3] * 31)`, 32 singular values spanning three decades;
- `digits`: the penultimate ReLU features of a small MLP (64-256-128) trained
  for 30 epochs on scikit-learn's `load_digits` (1797 samples, bundled with
  scikit-learn, no download), all 1797 rows (`digits-all`) and the first 256
  (`digits-256`, one batch);
- `offset`: the `digits-256` features plus a common offset of 10 times their
  largest entry (every row shares one large part, as positive ReLU features do).

The features are computed once (JAX backend, fixed seeds) and saved under
`--cache`. Prints, per backend and case, RankMe in float32 and its relative
error against `numpy.linalg.svd` in float64 of the same float32 array, and the
same for `alpha_req` (centred, uniform and inverse-rank weighted fits) against
a float64 NumPy fit.

    python benchmarks/rank_precision.py
    python benchmarks/rank_precision.py --backends jax --json out.json
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_features(path):
    """Penultimate features of an MLP trained on load_digits, cached in `path`."""
    if os.path.exists(path):
        return np.load(path)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    code = f"""
import numpy as np, keras
from sklearn.datasets import load_digits
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(0)
inputs = keras.Input((64,))
h = keras.layers.Dense(256, activation="relu")(inputs)
f = keras.layers.Dense(128, activation="relu")(h)
out = keras.layers.Dense(10)(f)
model = keras.Model(inputs, out)
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=64, epochs=30, verbose=0, shuffle=True)
features = keras.Model(inputs, f).predict(x, verbose=0).astype("float32")
np.save({path!r}, features)
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return np.load(path)


def cases(cache):
    z = trained_features(os.path.join(cache, "digits_features.npy"))
    batch = z[:256]
    return {
        "diag": np.diag([1.0] + [1e-3] * 31).astype("float32"),
        "digits-all": z,
        "digits-256": batch,
        "offset": (batch + 10.0 * np.abs(batch).max()).astype("float32"),
    }


def ref_rank_me(z):
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    s = s[s > max(z.shape) * np.finfo(np.float64).eps * s.max()]
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def ref_alpha(z, weighted):
    x = np.asarray(z, np.float64)
    x = x - x.mean(axis=0)
    lam = np.linalg.svd(x, compute_uv=False) ** 2
    lam = lam[lam > (max(x.shape) * np.finfo(np.float64).eps) ** 2 * lam.max()]
    k = np.arange(1, lam.size + 1, dtype=np.float64)
    w = 1.0 / k if weighted else np.ones_like(k)
    return float(-np.polyfit(np.log(k), np.log(lam), 1, w=np.sqrt(w))[0])


def run_backend(cache):
    import keras

    from keras_nc import ops as nc_ops

    rows = []
    for name, z in cases(cache).items():
        value = float(keras.ops.convert_to_numpy(nc_ops.rank_me(z)))
        ref = ref_rank_me(z)
        row = {"case": name, "rank_me": value, "ref": ref, "rel": value / ref - 1.0}
        if name != "diag":
            row["alpha"] = float(keras.ops.convert_to_numpy(nc_ops.alpha_req(z)))
            row["alpha_ref"] = ref_alpha(z, False)
            try:
                weighted = nc_ops.alpha_req(z, weighting="inverse_rank")
                row["alpha_w"] = float(keras.ops.convert_to_numpy(weighted))
            except TypeError:  # a version without the option
                row["alpha_w"] = float("nan")
            row["alpha_w_ref"] = ref_alpha(z, True)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--cache", default="/tmp/keras_nc_rank_precision")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    if args.worker:
        print(json.dumps(run_backend(args.cache)))
        return
    cases(args.cache)  # build the cache once
    results = {}
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend}
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "--cache", args.cache],
            env=env, check=True, capture_output=True, text=True, cwd=ROOT,
        ).stdout  # fmt: skip
        results[backend] = json.loads(out.strip().splitlines()[-1])
    print(f"{'backend':<11} {'case':<11} {'RankMe f32':>11} {'f64 SVD':>9} {'rel err':>9}"
          f" {'alpha':>8} {'ref':>8} {'alpha_w':>8} {'ref':>8}")  # fmt: skip
    for backend, rows in results.items():
        for r in rows:
            tail = ""
            if "alpha" in r:
                tail = (f" {r['alpha']:8.4f} {r['alpha_ref']:8.4f}"
                        f" {r['alpha_w']:8.4f} {r['alpha_w_ref']:8.4f}")  # fmt: skip
            print(f"{backend:<11} {r['case']:<11} {r['rank_me']:11.5f} {r['ref']:9.5f}"
                  f" {r['rel']:9.2e}{tail}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
