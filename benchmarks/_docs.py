"""Shared helper of the benchmark scripts: write a table into docs/performance.md."""

import os
import platform
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "performance.md")


def write_section(name, header, command, table):
    """Replaces (or appends) the section between `<!-- {name}:start/end -->` markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = (
        f"{start}\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU "
        f"cores: {header}\nCommand: `{command}`\n\n{table}\n{end}"
    )
    with open(DOC) as f:
        doc = f.read()
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + section + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + section + "\n"
    with open(DOC, "w") as f:
        f.write(doc)
    print(f"\nwritten to {os.path.relpath(DOC, ROOT)}")
