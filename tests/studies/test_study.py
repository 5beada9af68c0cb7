"""The studies' shared command line (`studies.study`): options, records, run or report.

Runs are the stand-in recipe `tests.studies.fake_recipe`, in-process; nothing
here touches Keras, so these tests run on the TensorFlow backend only.
"""

import os

import pytest

from studies import driver, study
from tests.helpers import BACKEND
from tests.studies import fake_recipe

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: no Keras in the study's bookkeeping"
)


def _study(tmp_path, figure=None, fresh=True):
    parser = study.parser("toy", "A toy study.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    study.add_common_options(parser, "toy", str(tmp_path / "records"), "", figure, fresh=fresh)
    return parser


def _planner(tmp_path):
    return lambda args: _plan(args, tmp_path)


def _plan(args, tmp_path):
    jobs = []
    for seed in args.seeds:
        out = str(tmp_path / "runs" / f"seed{seed}")
        argv = ("--seed", str(seed), "--output", out)
        jobs.append(
            driver.Job(f"seed{seed}", "tests.studies.fake_recipe", argv, out, {"seed": seed})
        )
    return jobs


def _summarize(results, job, backend, wall_seconds):
    return {**study.header(results, job, backend, wall_seconds), "accuracy": results["accuracy"]}


def test_common_options_and_locations():
    parser = study.parser("toy", "A toy study.")
    study.add_common_options(parser, "toy", "r", "d.md", figure="f.png", unit="run")
    args = parser.parse_args([])
    assert parser.prog == "python -m studies.toy"
    assert (args.records, args.doc, args.figure) == ("r", "d.md", "f.png")
    assert args.output == os.path.join("outputs", "studies", "toy")
    assert not (args.fresh or args.dry_run or args.report)
    assert "rerun runs whose folder is done" in parser.format_help()
    bare = study.add_common_options(study.parser("toy", ""), "toy", "r", "d.md", fresh=False)
    assert not hasattr(bare.parse_args([]), "fresh") and not hasattr(bare.parse_args([]), "figure")
    old = study.add_common_options(study.parser("t", ""), "t", "r", "d", deprecated_report="--old")
    with pytest.warns(DeprecationWarning, match="--old"):
        assert driver.resolve_report(old.parse_args(["--old"]), "--old").report
    records, doc, figure = study.locations(study.__file__, "toy")
    assert records.endswith(os.path.join("studies", "records"))
    assert doc.endswith(os.path.join("docs", "toy.md"))
    assert figure.endswith(os.path.join("docs", "images", "toy.png"))


def test_run_or_report_runs_records_and_reports_in_plan_order(tmp_path, capsys):
    parser = _study(tmp_path)
    calls = []

    def runner(job):
        calls.append(job.name)
        fake_recipe.main(job.argv)

    def report(args):
        return study.recorded(_plan(args, tmp_path), args.records)

    args = parser.parse_args(["--dry-run"])
    assert study.run_or_report(args, _planner(tmp_path), _summarize, report) == [
        "seed0",
        "seed1",
    ]
    assert calls == [] and not os.path.exists(args.records)
    args = parser.parse_args(["--seeds", "1"])
    found = study.run_or_report(args, _planner(tmp_path), _summarize, report, runner)
    assert calls == ["seed1"] and list(found) == [1]  # a one-key cell: its value is the key
    record = found[1]
    assert record["cell"] == {"seed": 1} and record["accuracy"] == 0.6  # 0.5 + seed / 10
    assert record["argv"] == ["--seed", "1", "--output", str(tmp_path / "runs" / "seed1")]
    args = parser.parse_args(["--report"])  # runs nothing: seed 0 stays unrecorded
    assert list(study.run_or_report(args, _planner(tmp_path), _summarize, report, runner)) == [1]
    assert calls == ["seed1"]
    args = parser.parse_args([])
    found = study.run_or_report(args, _planner(tmp_path), _summarize, report, runner)
    assert calls == ["seed1", "seed0"] and list(found) == [0, 1]  # plan order, not run order


def test_header_keeps_a_reused_runs_own_backend():
    job = driver.Job("seed0", "m", ("--seed", "0"), "out", {"spawn_epoch": 1, "seed": 0})
    head = study.header({"train_seconds": 2, "backend": "jax"}, job, "tensorflow", None)
    assert head["cell"] == job.cell and head["backend"] == "jax"
    assert head["command"] == "KERAS_BACKEND=jax python -m m --seed 0"
    assert head["wall_seconds"] is None and head["train_seconds"] == 2.0
    assert study.cell_key(job) == (1, 0)


def test_a_finished_run_folder_is_reused_unless_fresh_or_no_fresh_option(tmp_path):
    cases = ((True, [], []), (True, ["--fresh"], ["seed0"]), (False, [], ["seed0"]))
    for fresh_option, argv, expected in cases:
        folder = tmp_path / str(len(argv)) / str(fresh_option)
        args = _study(folder, fresh=fresh_option).parse_args(["--seeds", "0", *argv])
        fake_recipe.main(["--seed", "0", "--output", str(folder / "runs" / "seed0")])
        calls = []

        def runner(job, calls=calls):
            calls.append(job.name)
            fake_recipe.main(job.argv)

        study.run_or_report(args, _planner(folder), _summarize, lambda _: None, runner)
        assert calls == expected, (fresh_option, argv)


def test_publish_writes_the_page_only_where_it_exists_and_draws_where_asked(tmp_path, capsys):
    page = tmp_path / "toy.md"
    page.write_text("# Toy\n\n<!-- experiment:start -->\nold\n<!-- experiment:end -->\n")
    drawn = []
    args = _study(tmp_path, figure=str(tmp_path / "toy.png")).parse_args(["--doc", str(page)])
    assert study.publish(args, "| new |", legend="the legend", draw=drawn.append) == "| new |"
    assert capsys.readouterr().out == "the legend\n| new |\n"
    assert "| new |" in page.read_text() and "old" not in page.read_text()
    assert drawn == [str(tmp_path / "toy.png")]
    args = _study(tmp_path).parse_args(["--doc", str(tmp_path / "missing.md")])
    study.publish(args, "| new |", draw=drawn.append)  # no --figure option: nothing drawn
    assert drawn == [str(tmp_path / "toy.png")] and not (tmp_path / "missing.md").exists()
