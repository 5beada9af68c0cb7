"""The check every study test makes: `--report` rebuilds the committed page and figure.

`reproduces_report(cli, tmp_path, old)` breaks a copy of the study's docs page
(`cli.DOC`) inside its `<!-- experiment:start -->` block, runs
`cli.main(["--report", ...])` on it and asserts the page comes back byte for
byte from the committed records, and the figure with it (`cli.FIGURE`).
"""

import os

from studies import driver

START = "<!-- experiment:start -->"


def png_software(data):
    """The `Software` text chunk of a PNG (Matplotlib writes its version there), or None."""
    start = data.find(b"tEXtSoftware\x00")
    if start < 0:
        return None
    length = int.from_bytes(data[start - 4 : start], "big")  # the chunk's length field
    return data[start + 4 : start + 4 + length].split(b"\x00", 1)[1].decode("latin-1")


def assert_same_figure(made, kept, exact=False):
    """The figure drawn is the committed one: the same bytes under the same Matplotlib.

    Another Matplotlib may rasterise differently: then only the PNG header's
    width and height must agree, unless `exact`.
    """
    import matplotlib

    if not exact:
        assert made[16:24] == kept[16:24]  # the PNG header's width and height
        if png_software(kept) != png_software(made):
            return
    assert made == kept, matplotlib.__version__


def reproduces_report(cli, tmp_path, old, new="|", figure=True, exact_figure=False):
    """Asserts `--report` restores the page with `old` -> `new` in its table; its figure too.

    Returns the finished flags of the default grid's jobs (`driver.pending`,
    which stops on a record run with another command than the planned one).
    """
    args = cli.parse([])
    finished = [done for _, done in driver.pending(cli.plan(args), args.records)]
    with open(cli.DOC) as f:
        committed = f.read()
    stem = os.path.splitext(os.path.basename(cli.DOC))[0]
    doc = tmp_path / f"{stem}.md"
    head, rest = committed.split(START)
    doc.write_text(f"{head}{START}{rest.replace(old, new, 1)}")
    assert doc.read_text() != committed
    argv = ["--report", "--doc", str(doc)]
    drawn = tmp_path / f"{stem}.png"
    if figure:
        argv += ["--figure", str(drawn)]
    cli.main(argv)
    assert doc.read_text() == committed
    if figure:
        assert f"(images/{stem}.png)" in committed
        with open(cli.FIGURE, "rb") as f:
            assert_same_figure(drawn.read_bytes(), f.read(), exact_figure)
    return finished
