"""The pruning study's tables: the measures against sparsity, and when each one moves.

`report(records)` (records `{seed: record}`, each with the cell's `rows`) gives
two Markdown tables:

- the measures (test accuracy in %, MIR, HDR, NC1, loss) per variant and
  sparsity: mean ± 95% t half-width over the seeds (`studies.statistics`);
- for each variant and measure: the first sparsity at which the change from
  sparsity 0 (paired over seeds, same variant) has a 95% t interval excluding
  0, the paired change at 0.9, and Spearman's rho between the measure's and
  the accuracy's means over the sparsities (permutation p).

Example:

>>> rows = [{"variant": "direct", "sparsity": s, "accuracy": 1 - s / 2, "mir": s, "hdr": 0,
...          "nc1": 1, "loss": s} for s in (0.0, 0.5)]
>>> values({0: {"rows": rows}}, "direct", 0.5, "accuracy", scale=100.0)
[75.0]
"""

from studies import docs, statistics

VARIANTS = (
    ("direct", "pruned"),
    ("bn", "pruned, BN statistics recomputed"),
    ("tuned", "pruned + fine-tuned"),
)
# (key, column title, scale): the measures of the table, accuracy in percent.
MEASURES = (
    ("accuracy", "test acc. (%)", 100.0),
    ("mir", "MIR", 1.0),
    ("hdr", "HDR", 1.0),
    ("nc1", "NC1", 1.0),
    ("loss", "test loss", 1.0),
)
CHANGE_AT = 0.9
LEGEND = (
    "Test split (2000 images) of the conv net trained 10 epochs, globally magnitude-pruned at "
    "each sparsity: pruned (stored BN statistics), BN statistics recomputed on the training "
    "split, and fine-tuned 2 epochs with KeepPruned (BN statistics then recomputed). "
    "Mean ± 95% t half-width over 3 seeds. "
    "first change: the smallest sparsity whose paired change from sparsity 0 (same variant) "
    "has a 95% t interval excluding 0; change at 0.9: that paired change (p of the paired "
    "t-test); rho: Spearman's rank correlation of the measure's and the accuracy's means over "
    "the sparsities (permutation p)."
)


def values(records, variant, sparsity, key, scale=1.0):
    """`key` of the row (`variant`, `sparsity`) of each record (None where missing)."""
    found = []
    for record in records.values():
        row = next(
            (r for r in record["rows"] if r["variant"] == variant and r["sparsity"] == sparsity),
            None,
        )
        value = None if row is None else row.get(key)
        found.append(None if value is None else scale * float(value))
    return found


def sparsities(records):
    """The sparsities of the records' rows, sorted."""
    return sorted({r["sparsity"] for record in records.values() for r in record["rows"]})


def measures_table(records):
    """Mean ± 95% t half-width of each measure, per variant and sparsity."""
    header = ["variant", "sparsity", *(title for _, title, _ in MEASURES)]
    rows = []
    for variant, label in VARIANTS:
        for s in sparsities(records):
            cells = [
                statistics.mean_interval(values(records, variant, s, key, scale)).text(
                    1 if key == "accuracy" else 3
                )
                for key, _, scale in MEASURES
            ]
            rows.append([label, f"{s:g}", *cells])
    return docs.table(header, "l r" + " r" * len(MEASURES), rows)


def first_change(records, variant, key):
    """The smallest sparsity > 0 whose paired change from 0 excludes 0, or None."""
    base = values(records, variant, 0.0, key)
    for s in sparsities(records):
        if s == 0.0:
            continue
        change = statistics.paired_difference(values(records, variant, s, key), base)
        if change.difference.count >= 2 and not change.difference.contains(0.0):
            return s
    return None


def rank_correlation(records, variant, key):
    """Spearman's rho of the means of `key` and of accuracy over the sparsities."""
    grid = sparsities(records)
    means = {
        k: [statistics.mean_interval(values(records, variant, s, k)).mean for s in grid]
        for k in (key, "accuracy")
    }
    return statistics.spearman(means[key], means["accuracy"])


def reading_table(records):
    """Per variant and measure: first detected change, change at 0.9, rho with accuracy."""
    header = ["variant", "measure", "first change", f"change at {CHANGE_AT:g}", "rho with acc."]
    rows = []
    for variant, label in VARIANTS:
        for key, title, scale in MEASURES:
            first = first_change(records, variant, key)
            change = statistics.paired_difference(
                values(records, variant, CHANGE_AT, key, scale),
                values(records, variant, 0.0, key, scale),
            )
            rho = "" if key == "accuracy" else rank_correlation(records, variant, key).text()
            first_text = "none detected (n = 3)" if first is None else f"{first:g}"
            digits = 1 if key == "accuracy" else 3
            rows.append([label, title, first_text, change.text(digits), rho])
    return docs.table(header, "l l r r r", rows)


def report(records):
    """The two tables (empty note when nothing is recorded)."""
    if not records:
        return "No recorded cells yet: run `python -m studies.pruning`."
    seeds = ", ".join(str(seed) for seed in records)
    return "\n\n".join(
        [
            f"Seeds {seeds}; test split; mean ± 95% t half-width over the seeds.",
            measures_table(records),
            "When each measure moves (paired over seeds, against sparsity 0 of the same "
            "variant; percentage points for accuracy):",
            reading_table(records),
        ]
    )
