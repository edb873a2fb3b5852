#!/usr/bin/env bash
# Mutation testing of stagewise's core modules over the fast tests (TESTING.md; not in CI: too slow).
#
#   pip install mutmut==3.8.1
#   bash benchmarks/mutation.sh [FOLDER] [MODULE.py ...]     # default /tmp/stagewise-mutation, the core modules
#   MUTATION_COMMIT=HEAD bash benchmarks/mutation.sh ...        # a commit's tree instead of the working tree
#
# mutmut runs in a copy of the working tree (FOLDER/repo; the checkout is never edited), with the package
# moved to src/stagewise: mutmut names a mutant after its file's module path and only knows the ./, src/ and
# source/ layouts, while the tests import `stagewise`. Each mutant runs only the fast tests that reach the
# mutated function (mutmut's per-function coverage), in one process each (-n 0). PYTHONPATH points at the
# mutated copy so that subprocesses (tests/snakemake_params.py) import it too. Prints the score per module
# (benchmarks/mutation_score.py; equivalent mutants, benchmarks/mutation_equivalent.txt, left out) and writes the
# other survivors to FOLDER/survivors.tsv; `cd FOLDER/repo && mutmut show NAME` shows a mutant's diff.
# Last run (TESTING.md): 3743 mutants, 95.4 % of the non-equivalent killed (steps/report.py rerun), 1792 s.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
FOLDER=${1:-/tmp/stagewise-mutation}
shift || true
MODULES=("$@")
if [ ${#MODULES[@]} -eq 0 ]; then
  MODULES=(config.py config_files.py config_yaml.py steps/stage.py freezing.py checkpoints.py surgery.py transfer.py bootstrap.py steps/report.py
    io/batches.py)
fi
TESTS="tests/test_promises.py tests/test_freezing.py tests/test_config.py tests/test_bad_config.py tests/test_checkpoints.py
tests/test_metrics.py tests/test_report.py tests/test_compatibility.py tests/test_streaming.py tests/test_training.py
$(cd "$REPO" && ls tests/test_mutants_*.py 2>/dev/null | tr '\n' ' ')"

rm -rf "$FOLDER"
mkdir -p "$FOLDER/repo/src"
if [ -n "${MUTATION_COMMIT:-}" ]; then  # a commit instead of the working tree (others' edits in progress left out)
  git -C "$REPO" archive "$MUTATION_COMMIT" | tar -C "$FOLDER/repo" -xf -
else
  tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=./results --exclude=./build --exclude=./.snakemake \
      --exclude=./mutants --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$FOLDER/repo" -xf -
fi
mv "$FOLDER/repo/workflow/stagewise" "$FOLDER/repo/src/stagewise"
cd "$FOLDER/repo"
{
  echo "[mutmut]"
  echo "source_paths = src/stagewise"
  echo "only_mutate ="
  for module in "${MODULES[@]}"; do echo "    src/stagewise/$module"; done
  echo "also_copy ="
  for path in Snakefile workflow/rules workflow/scripts workflow/schemas workflow/report config envs profiles .snakemake-workflow-catalog.yml; do
    echo "    $path"
  done
  echo "pytest_add_cli_args ="
  # deselected: tests whose subprocess (the `stagewise` CLI, snakemake) runs in another folder, where mutmut's
  # coverage pass (MUTANT_UNDER_TEST=stats, inherited) finds no mutmut config and fails; one asserts which
  # modules `stagewise check` imports, and the trampolines import more
  for arg in -n 0 -p no:cacheprovider -m "not e2e" \
      --deselect tests/test_compatibility.py::test_cli_check_costs_a_load_not_a_training_start \
      --deselect tests/test_compatibility.py::test_cli_check_exit_codes \
      --deselect tests/test_streaming.py::test_evaluate_and_validation_stream_the_split_never_reading_it_whole \
      --deselect tests/test_streaming.py::test_evaluate_and_finetune_streamed_repeat_the_workflows_numbers; do
    echo "    $arg"
  done
  echo "pytest_add_cli_args_test_selection ="
  for t in $TESTS; do echo "    $t"; done
  # mutmut stops a mutant's tests after (their measured time + constant) x multiplier seconds of wall clock (twice
  # that of CPU time): measured times are short, so its defaults (1 s, 15) stopped surviving stage mutants after 4 s
  # on this loaded machine (false timeouts), or let a looping one run for minutes; here at least 60 s
  echo "timeout_multiplier = 2"
  echo "timeout_constant = 30"
  echo "process_isolation = fork"
  echo "use_git_change_detection = false"
} > setup.cfg
# one torch/OpenMP thread: each mutant's process is forked from one that already ran torch
export PYTHONPATH="$FOLDER/repo/mutants/src" PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# made before Python starts: a PYTHONPATH folder missing at the first import is cached as absent, and the
# tests would then import the unmutated package of the editable install (and mutmut find no test per mutant)
mkdir -p mutants/src
start=$(date +%s)
mutmut run --max-children 1 || true  # one core: the machine is shared
echo "mutmut run: $(( $(date +%s) - start )) s"
# per module: killed % of the mutants not listed in benchmarks/mutation_equivalent.txt; the rest to FOLDER/survivors.tsv
python "$REPO/benchmarks/mutation_score.py" "$FOLDER/repo" --equivalent "$REPO/benchmarks/mutation_equivalent.txt"
