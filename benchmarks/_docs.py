"""Shared helper of the benchmark and experiment scripts: write a table into a docs page."""

import os
import platform
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_section(name, header, command, table, page="performance.md"):
    """Replaces (or appends) the section between `<!-- {name}:start/end -->` markers of
    `docs/{page}`."""
    doc_path = os.path.join(ROOT, "docs", page)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = (
        f"{start}\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU "
        f"cores: {header}\nCommand: `{command}`\n\n{table}\n{end}"
    )
    with open(doc_path) as f:
        doc = f.read()
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + section + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + section + "\n"
    with open(doc_path, "w") as f:
        f.write(doc)
    print(f"\nwritten to {os.path.relpath(doc_path, ROOT)}")
