"""The early-stopping study's report: the stopping rules' table, the measures' table, the check.

Every stopping rule (monitor x patience, `replay.MONITORS` x
`replay.PATIENCES`) is Keras' `EarlyStopping(mode="auto",
restore_best_weights=True)` replayed on each seed's recorded logs
(`studies.early_stopping.replay`); the restored model's test accuracy is the
test accuracy recorded at the restored epoch. Differences are paired over
seeds (`studies.statistics.paired_difference`), means carry their 95% t
interval (`studies.statistics.mean_interval`). Epochs are printed 1-based,
as Keras' progress bar counts them.

Example:

```python
from studies.early_stopping import cli, table

runs, check = cli.records(cli.parse([]))
print(table.report(runs, check))
```
"""

import numpy as np

from studies import docs, statistics
from studies.early_stopping import replay

MEASURES = {
    "val_loss": "val loss",
    "val_accuracy": "val accuracy",
    "val_mir": "val MIR",
    "val_hdr": "val HDR",
    "val_nc1": "val NC1",
}
TEST = "test_accuracy"
# The late epochs: after the first rise of every curve, where a stopping rule acts.
LATE = 10
PERMUTATIONS = 2000  # Spearman's p-values are not printed: few permutations suffice


def replay_model():
    """The study's model compiled as in the runs, its metrics built (resolves `mode="auto"`)."""
    from studies import fashion_mnist

    model = fashion_mnist.compile_model(fashion_mnist.convnet(0))
    images = np.zeros((fashion_mnist.NUM_CLASSES, 28, 28, 1), "float32")
    model.evaluate(images, np.arange(fashion_mnist.NUM_CLASSES), verbose=0)
    return model


def stops(runs, model):
    """`{(monitor, patience): {seed: Stop}}` of every stopping rule on every recorded run."""
    return {
        (monitor, patience): {
            seed: replay.replay(record["history"], model, monitor, patience)
            for seed, record in runs.items()
        }
        for monitor in replay.MONITORS
        for patience in replay.PATIENCES
    }


def points(values):
    """Fractions as percentage points."""
    return [100.0 * value for value in values]


def restored_accuracy(runs, seed_stops):
    """Per seed (sorted), the test accuracy recorded at the epoch the rule restores."""
    return [runs[s]["history"][TEST][seed_stops[s].best_epoch] for s in sorted(runs)]


def rule_row(label, runs, seed_stops, reference=None):
    """One row of the rules' table: epochs, epochs saved, test accuracy and its losses.

    `reference`: the restored test accuracies of the rule to compare with (per
    seed), or `None` for none (`"-"`).
    """
    seeds = sorted(runs)
    epochs = [len(runs[s]["history"][TEST]) for s in seeds]
    tests = [runs[s]["history"][TEST] for s in seeds]
    trained = [seed_stops[s].epochs_trained for s in seeds]
    restored = restored_accuracy(runs, seed_stops)
    last = [test[-1] for test in tests]
    best = [max(test) for test in tests]
    peaks = [int(np.argmax(test)) for test in tests]
    miss = [abs(seed_stops[s].best_epoch - peak) for s, peak in zip(seeds, peaks, strict=True)]
    stopped = sum(seed_stops[s].stopped for s in seeds)
    return [
        label,
        f"{stopped}/{len(seeds)}",
        statistics.mean_interval(trained).text(1),
        statistics.mean_interval([e - t for e, t in zip(epochs, trained, strict=True)]).text(1),
        statistics.mean_interval(points(restored)).text(2),
        statistics.paired_difference(points(restored), points(last)).text(2),
        statistics.paired_difference(points(restored), points(best)).text(2),
        "-"
        if reference is None
        else statistics.paired_difference(points(restored), points(reference)).text(2),
        statistics.mean_interval(miss).text(1),
    ]


RULES_HEADER = [
    "rule",
    "stopped",
    "epochs trained",
    "epochs saved",
    "test acc. (%)",
    "vs last epoch (pp)",
    "vs best epoch (pp)",
    "vs `val_loss`, same patience (pp)",
    "restored to best test-acc. epoch (epochs)",
]


def rules_table(runs, all_stops):
    """The stopping rules' table, with training to the end as its first row."""
    seeds = sorted(runs)
    epochs = len(runs[seeds[0]]["history"][TEST])
    to_end = {s: replay.Stop(epochs, 0, epochs - 1, False) for s in seeds}
    rows = [rule_row(f"none ({epochs} epochs, last weights)", runs, to_end)]
    for (monitor, patience), seed_stops in all_stops.items():
        loss = restored_accuracy(runs, all_stops["val_loss", patience])
        reference = None if monitor == "val_loss" else loss
        rows.append(rule_row(f"`{monitor}`, patience {patience}", runs, seed_stops, reference))
    return docs.table(RULES_HEADER, "l r r r r r r r r", rows)


def best_epoch(values, comparison):
    """The first epoch of the best value (`"max"` or `"min"`)."""
    return int(np.argmax(values) if comparison == "max" else np.argmin(values))


def measure_row(monitor, runs, comparison):
    """Spearman with test accuracy per seed, and where the measure's best epoch lands."""
    seeds = sorted(runs)
    rhos, late, distances, accuracy_lost = [], [], [], []
    for seed in seeds:
        history = runs[seed]["history"]
        rhos.append(statistics.spearman(history[monitor], history[TEST], PERMUTATIONS))
        late.append(
            statistics.spearman(history[monitor][LATE:], history[TEST][LATE:], PERMUTATIONS)
        )
        epoch = best_epoch(history[monitor], comparison)
        distances.append(abs(epoch - int(np.argmax(history[TEST]))))
        accuracy_lost.append(100.0 * (history[TEST][epoch] - max(history[TEST])))
    return [
        MEASURES[monitor],
        comparison,
        ", ".join(f"{rho.rho:+.2f}" for rho in rhos),
        statistics.mean_interval([rho.rho for rho in rhos]).text(2),
        statistics.mean_interval([rho.rho for rho in late]).text(2),
        ", ".join(str(best_epoch(runs[s]["history"][monitor], comparison) + 1) for s in seeds),
        ", ".join(str(int(np.argmax(runs[s]["history"][TEST])) + 1) for s in seeds),
        statistics.mean_interval(distances).text(1),
        statistics.mean_interval(accuracy_lost).text(2),
    ]


MEASURES_HEADER = [
    "measure",
    "best is",
    "Spearman with test acc. (per seed)",
    "mean rho",
    f"mean rho after epoch {LATE}",
    "best epoch (per seed)",
    "best test-acc. epoch",
    "distance (epochs)",
    "test acc. there vs best (pp)",
]


def measures_table(runs, model):
    """Each validation measure against test accuracy over the epochs of the full runs."""
    rows = [measure_row(monitor, runs, replay.comparison(model, monitor)) for monitor in MEASURES]
    return docs.table(MEASURES_HEADER, "l l r r r r r r r", rows)


def check_text(runs, check, model):
    """The check: a real `fit` with `EarlyStopping` against the replay of the same seed."""
    if check is None:
        return "Check run: not recorded yet."
    stop = check["early_stopping"]
    seed = check["cell"]["seed"]
    if seed not in runs:
        return f"Check run: the full run of seed {seed} is not recorded yet."
    full = runs[seed]["history"]
    replayed = replay.replay(full, model, stop["monitor"], stop["patience"])
    shared = [key for key in check["history"] if key in full]
    gap = max(
        abs(a - b)
        for key in shared
        for a, b in zip(check["history"][key], full[key][: check["epochs_run"]], strict=True)
    )
    fit = (check["epochs_run"], stop["best_epoch"])
    same = fit == (replayed.epochs_trained, replayed.best_epoch)
    restored = stop["restored_test"]["accuracy"]
    return (
        f'Check run (seed {seed}, `EarlyStopping(monitor="{stop["monitor"]}", mode="auto", '
        f"patience={stop['patience']}, restore_best_weights=True)` inside `fit`): trained "
        f"{check['epochs_run']} epochs and restored epoch {stop['best_epoch'] + 1}; the replay on "
        f"the full run's logs: {replayed.epochs_trained} epochs, epoch {replayed.best_epoch + 1} "
        f"({'the same' if same else 'DIFFERENT'}). Largest difference between the two runs' "
        f"logs over the epochs both trained: {gap:.3g}. Test accuracy of the restored model: "
        f"{100 * restored:.2f}% (recorded at that epoch of the full run: "
        f"{100 * full[TEST][replayed.best_epoch]:.2f}%)."
    )


def report(runs, check, model=None):
    """The report: both tables and the check, as Markdown."""
    if not runs:
        return "No run recorded yet."
    model = replay_model() if model is None else model
    seeds = ", ".join(str(seed) for seed in sorted(runs))
    return "\n\n".join(
        [
            f"Seeds {seeds}; mean ± 95% t half-width over seeds; pp: percentage points of "
            "test accuracy, paired over seeds (p: paired t-test); epochs 1-based.",
            rules_table(runs, stops(runs, model)),
            measures_table(runs, model),
            check_text(runs, check, model),
        ]
    )
