"""Experiment drivers write their tables into the docs between two markers."""

START, END = "<!-- experiment:start -->", "<!-- experiment:end -->"


def write_table(text, doc):
    """Replaces what lies between `START` and `END` in the Markdown file `doc` by `text`."""
    with open(doc) as f:
        content = f.read()
    if START not in content or END not in content:
        raise SystemExit(f"error: {doc} lacks the {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w") as f:
        f.write(f"{head}{START}\n{text}\n{END}{tail}")
