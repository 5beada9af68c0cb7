"""The studies write their reports into docs/ pages, between two markers.

A page that holds a study's report has one `<!-- experiment:start -->` line
and one `<!-- experiment:end -->` line; `write` replaces what lies between
them and leaves the rest of the page as it is, so the text around a report
(the reading of the numbers) is written by hand and the report by the study.
`table` formats a Markdown table and `save_figure` writes a Matplotlib
figure (`docs/images/`).

Example:

```python
from studies import docs

text = docs.table(["run", "seed", "minutes"], "l r r", [["default", 0, "4.1"]])
print(text)
# | run | seed | minutes |
# |---|---:|---:|
# | default | 0 | 4.1 |
docs.write(text, "docs/grokking.md")
```
"""

import os

START, END = "<!-- experiment:start -->", "<!-- experiment:end -->"
ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def write(text, doc):
    """Replaces what lies between `START` and `END` in the Markdown file `doc` by `text`."""
    with open(doc) as f:
        content = f.read()
    if START not in content or END not in content:
        raise SystemExit(f"error: {doc} lacks the {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w") as f:
        f.write(f"{head}{START}\n{text}\n{END}{tail}")


def table(header, align, rows):
    """A Markdown table: `header` cells, `align` one letter per column (l, r, c), `rows`."""
    letters = align.split()
    if len(letters) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row and `align` need {len(header)} columns")
    lines = [
        "| " + " | ".join(str(cell) for cell in header) + " |",
        "|" + "|".join(ALIGN[letter] for letter in letters) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    """Matplotlib's `pyplot` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=110):
    """Writes `fig` to `path` (its folder created) and closes it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
