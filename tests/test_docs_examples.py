"""Every Python block of README.md and docs/*.md runs as written, in order.

Each page runs in its own namespace, its blocks in the order of the page, in a
temporary working directory (the blocks write `model.keras`, `outputs/...`).
Pages define the data and backbone they need in a visible "Setup" block.

A block can be marked by an HTML comment on the line right before its fence:

- `<!-- docs-test: skip REASON -->`: not run (the page must also say why, in
  its text). Allowed only where the block cannot run here (internet, a GPU,
  hours of training); `EXPECTED_SKIPS` lists them, so a new skip fails here
  until it is listed.
- `<!-- docs-test: setup -->`: an ordinary block that the page's
  fresh-process blocks also run first (stand-ins for data and backbone).
- `<!-- docs-test: fresh process KERAS_BACKEND=NAME -->`: runs in a new
  Python process under that backend, after the page's setup blocks.
- `<!-- docs-test: fresh process -->`: runs alone in a new Python process
  (the block sets its backend itself, before importing Keras).

Fresh processes are for the backend-specific code of docs/scaling.md.

The in-process blocks run on PyTorch only: they are backend-agnostic Keras
code, and PyTorch runs them fastest (eager steps, no compilation).
"""

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

from tests.helpers import BACKEND

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted(
    str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
)
# Blocks that cannot run here, per page (each has a `skip` marker and a reason on the page).
EXPECTED_SKIPS = {
    "docs/clip.md": 2,  # keras-hub presets downloaded from the internet
    "docs/semi_supervised.md": 1,  # 2^20 FreeMatch steps on CIFAR (datasets from the internet)
}
# Tiny examples on a shared CPU: one BLAS/OpenMP thread each (PyTorch's pool of
# two threads made the README's example 20x slower on 2 busy cores).
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>.*?)\s*-->\s*$")
FRESH = re.compile(r"^fresh process(?: KERAS_BACKEND=(?P<backend>tensorflow|jax|torch))?$")


@dataclasses.dataclass
class Block:
    page: str
    line: int  # 1-based line of the first line of code
    code: str
    marker: str  # "" (ordinary), "setup", "skip ...", "fresh process ..."

    @property
    def where(self):
        return f"{self.page}:{self.line}"


def python_blocks(page):
    """The fenced Python blocks of a page, with the marker on the line before each."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if MARKER.match(lines[i]) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                raise AssertionError(f"{page}:{i + 1}: a docs-test marker must precede a fence")
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        if match["info"].strip().split(" ")[0] in ("python", "py"):
            code = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end])
            blocks.append(Block(page, i + 2, code, marker["what"] if marker else ""))
        elif marker:
            raise AssertionError(f"{page}:{i + 1}: docs-test marker before a non-Python block")
        i = end + 1
    for block in blocks:
        ok = block.marker in ("", "setup") or FRESH.match(block.marker)
        if block.marker.startswith("skip"):
            ok = len(block.marker.split(maxsplit=1)) == 2  # a reason is required
        assert ok, f"{block.where}: unknown or incomplete docs-test marker {block.marker!r}"
    return blocks


def compiled_block(block):
    """The block's code compiled with the page's line numbers (tracebacks point at the page)."""
    return compile("\n" * (block.line - 1) + block.code, block.page, "exec")


def start_fresh(block, setup, cwd):
    """Starts `block` in a new process: alone, or after `setup` under the marker's backend."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT), **ONE_THREAD)
    backend = FRESH.match(block.marker)["backend"]
    code = block.code
    if backend:
        env["KERAS_BACKEND"] = backend
        code = "\n\n".join([*(b.code for b in setup), block.code])
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_page_is_collected_and_skips_are_listed():
    assert "README.md" in PAGES and "docs/guide.md" in PAGES
    skips = {}
    for page in PAGES:
        for block in python_blocks(page):
            if block.marker.startswith("skip"):
                skips[page] = skips.get(page, 0) + 1
    assert skips == EXPECTED_SKIPS


@pytest.mark.skipif(
    BACKEND != "torch",
    reason="the blocks are backend-agnostic Keras code; they run once, on PyTorch (fastest)",
)
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(not b.marker.startswith("skip") for b in python_blocks(p))]
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))  # the recipes package
    monkeypatch.setenv("MPLBACKEND", "Agg")
    blocks = python_blocks(page)
    setup = [b for b in blocks if b.marker == "setup"]
    # Fresh processes share nothing with the page's namespace: start them all
    # first, side by side, and collect them at the end.
    fresh = []
    for i, block in enumerate(blocks):
        if block.marker.startswith("fresh process"):
            (tmp_path / f"fresh{i}").mkdir()
            fresh.append((block, start_fresh(block, setup, tmp_path / f"fresh{i}")))
    namespace = {"__name__": "__docs__"}
    keras.utils.set_random_seed(0)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for block in blocks:
            if block.marker == "" or block.marker == "setup":
                exec(compiled_block(block), namespace)
    finally:
        torch.set_num_threads(threads)
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
        for block, process in fresh:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, f"{block.where} failed in a fresh process:\n{stderr}"
