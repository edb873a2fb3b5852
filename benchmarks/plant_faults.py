"""Plant known faults, one at a time, in a copy of the repository and check that the fast tests catch each.

    python benchmarks/plant_faults.py [--only NAME ...] [--folder /tmp/stagewise-faults] [--keep]

The working tree (without .venv, results, build outputs) is copied to --folder/clean once; for each fault a
copy of that gets one source edit (an exact string replaced, which must occur once), and the fault's tests
run there with `python -m pytest -n 0 -m "not e2e"` and PYTHONPATH on the copy's `workflow/`, so the copy's
package and Snakefile are the ones tested (the real checkout is never edited). A fault is caught when its
tests fail. First the same tests run on the unedited copy and must pass. Prints a table (TESTING.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = {
    ".venv",
    "results",
    "build",
    ".snakemake",
    ".git",
    "mutants",
    ".pytest_cache",
    "__pycache__",
    "stagewise.egg-info",
}


@dataclass
class Fault:
    name: str
    path: str
    old: str
    new: str
    tests: list[str]  # pytest node ids or files, relative to the repository
    equivalent: str = ""  # why no test can catch it (a change that breaks no promise): expected to survive


P = "tests/test_promises.py::"
FAULTS = [
    # issue 21's surviving faults
    Fault(
        "metrics.tsv drops a model (report step)",
        "workflow/stagewise/steps/report.py",
        '    for model in models:\n        result = model["result"]',
        '    for model in models[:-1]:\n        result = model["result"]',
        [P + "test_metrics_tsv_has_exactly_one_row_per_evaluated_model"],
    ),
    Fault(
        "metrics.tsv drops a stage (models the workflow lists)",
        "workflow/rules/common.smk",
        "        for folder in sw_config.stage_dirs(config, name)\n    ]\n    baselines",
        "        for folder in sw_config.stage_dirs(config, name)[:1]\n    ]\n    baselines",
        [P + "test_the_report_is_given_every_stage_of_every_experiment_and_each_baseline"],
    ),
    Fault(
        "metrics.tsv drops the pretrained baseline",
        "workflow/rules/common.smk",
        'if "pretrained" in baselines and config',
        'if False and "pretrained" in baselines and config',
        [P + "test_the_report_is_given_every_stage_of_every_experiment_and_each_baseline"],
    ),
    Fault(
        "bootstrap not paired: own resamples per model",
        "workflow/stagewise/steps/report.py",
        "reps = tasks.get(task).replicates(data, **draw)",
        'reps = tasks.get(task).replicates(data, **{**draw, "seed": draw["seed"] + 1 + len(out)})',
        [P + "test_report_pairs_every_model_with_scratch_on_the_same_resamples"],
    ),
    Fault(
        "bootstrap pairs on a fixed seed, not evaluation.seed",
        "workflow/stagewise/steps/report.py",
        'draw = {"resamples": evaluation["bootstrap"], "seed": evaluation["seed"], **options}',
        'draw = {"resamples": evaluation["bootstrap"], "seed": 0, **options}',
        [P + "test_report_pairs_every_model_with_scratch_on_the_same_resamples"],
    ),
    Fault(
        "canonical key order removed from rule params",
        "workflow/rules/common.smk",
        "config.update(sw_config.canonical(_validated))",
        "config.update(_validated)",
        [P + "test_keys_reordered_at_any_depth_change_no_rules_params"],
    ),
    Fault(
        "canonical() keeps key order",
        "workflow/stagewise/config.py",
        "return json.loads(json.dumps(obj, sort_keys=True))",
        "return json.loads(json.dumps(obj))",
        [P + "test_keys_reordered_at_any_depth_change_no_rules_params"],
    ),
    Fault(
        "gradient mask hook of train: [new] removed",
        "workflow/stagewise/freezing.py",
        "        handles.append(param.register_hook(lambda grad, mask=mask: grad * mask))\n",
        "",
        [
            P + "test_freeze_entries_masks_the_gradient_itself",
            P + "test_train_new_optimizer_and_clipping_see_only_the_new_columns_gradient",
        ],
    ),
    Fault(
        "train_per_class seeded from the clock",
        "workflow/stagewise/splits.py",
        "    rng = np.random.default_rng(seed)\n    keep",
        "    rng = np.random.default_rng()\n    keep",
        [P + "test_train_per_class_sampling_is_seeded_byte_for_byte"],
    ),
    Fault(
        "atomic writes removed",
        "workflow/stagewise/files.py",
        'tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")',
        "tmp = path",
        ["tests/test_checkpoints.py::test_save_is_atomic_and_leaves_no_temporary"],
    ),
    # more, of the same promises
    Fault(
        "p_no_gain counts ties as gains",
        "workflow/stagewise/bootstrap.py",
        "worse = diff >= 0 if lower_is_better else diff <= 0",
        "worse = diff > 0 if lower_is_better else diff < 0",
        [P + "test_report_pairs_every_model_with_scratch_on_the_same_resamples"],
    ),
    Fault(
        "train_per_class keeps one sample too many",
        "workflow/stagewise/splits.py",
        "[:limit] for c in",
        "[:limit + 1] for c in",
        [P + "test_train_per_class_sampling_is_seeded_byte_for_byte"],
    ),
    Fault(
        "train_per_class ignores the dataset's seed",
        "workflow/stagewise/splits.py",
        "    rng = np.random.default_rng(seed)\n    keep",
        "    rng = np.random.default_rng(0)\n    keep",
        [P + "test_train_per_class_sampling_is_seeded_byte_for_byte"],
    ),
    Fault(
        "gradient mask applied to the wrong entries",
        "workflow/stagewise/freezing.py",
        "lambda grad, mask=mask: grad * mask",
        "lambda grad, mask=mask: grad * ~mask",
        [
            P + "test_freeze_entries_masks_the_gradient_itself",
            P + "test_train_new_optimizer_and_clipping_see_only_the_new_columns_gradient",
        ],
    ),
    Fault(
        "train: [new] values not restored after the step",
        "workflow/stagewise/freezing.py",
        "        handles.append(optimizer.register_step_post_hook(restore))",
        "        pass",
        ["tests/test_freezing.py::test_train_new_changes_only_the_new_columns_bitwise"],
    ),
    Fault(
        "report table rows take the first model's CI",
        "workflow/stagewise/steps/report.py",
        'result.get("ci", {}).get(name, [np.nan, np.nan])',
        'models[0]["result"].get("ci", {}).get(name, [np.nan, np.nan])',
        [P + "test_metrics_tsv_has_exactly_one_row_per_evaluated_model"],
    ),
    Fault(
        "evaluation params lose their canonical order",
        "workflow/rules/common.smk",
        '    return {k: v for k, v in config["evaluation"].items() if k != "baselines"}',
        '    return {k: v for k, v in reversed(config["evaluation"].items()) if k != "baselines"}',
        [P + "test_keys_reordered_at_any_depth_change_no_rules_params"],
        "equivalent: a fixed order, whatever the YAML's, so the params still never change with it",
    ),
]


def _copy(target: Path) -> None:
    shutil.copytree(REPO, target, ignore=lambda _dir, names: [n for n in names if n in SKIP])


def _pytest(folder: Path, tests: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(folder / "workflow"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-x", "-m", "not e2e", "-p", "no:cacheprovider", *tests],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = (done.stdout + done.stderr).strip().splitlines() or [""]
    first_error = next((line[1:].strip() for line in lines if line.startswith("E ")), "")  # why it failed
    return done.returncode == 0, lines[-1] + (f": {first_error[:120]}" if first_error else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="substrings of fault names to run")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/stagewise-faults"))
    parser.add_argument("--keep", action="store_true", help="keep the copies")
    args = parser.parse_args()
    faults = [f for f in FAULTS if not args.only or any(s in f.name for s in args.only)]
    shutil.rmtree(args.folder, ignore_errors=True)
    clean = args.folder / "clean"
    _copy(clean)
    check = subprocess.run(
        [sys.executable, "-c", "import stagewise; print(stagewise.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(clean / "workflow")},
    )
    assert check.stdout.startswith(str(clean)), (
        f"the copy's package is not the one imported: {check.stdout}{check.stderr}"
    )
    tests = sorted({t for f in faults for t in f.tests})
    ok, tail = _pytest(clean, tests)
    print(f"unedited copy: {'pass' if ok else 'FAIL'} ({tail})", flush=True)
    if not ok:
        return 1
    missed = 0
    print("| fault | file | caught by | result |\n|---|---|---|---|")
    for i, fault in enumerate(faults):
        folder = args.folder / f"fault{i}"
        shutil.copytree(clean, folder)
        source = folder / fault.path
        text = source.read_text()
        assert text.count(fault.old) == 1, (
            f"{fault.name}: the text to replace occurs {text.count(fault.old)} times in {fault.path}"
        )
        source.write_text(text.replace(fault.old, fault.new))
        started = time.perf_counter()
        passed, tail = _pytest(folder, fault.tests)
        missed += passed and not fault.equivalent
        names = ", ".join(t.rpartition("::")[2] or t for t in fault.tests)
        verdict = "caught" if not passed else f"survived, {fault.equivalent}" if fault.equivalent else "SURVIVED"
        print(
            f"| {fault.name} | `{fault.path}` | {names} | {verdict} ({tail}; {time.perf_counter() - started:.0f} s) |",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(folder)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
