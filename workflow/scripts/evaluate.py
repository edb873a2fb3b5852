from stagewise.entry import run_step
from stagewise.steps import evaluate

run_step(evaluate.run, snakemake)  # noqa: F821 (injected by Snakemake)
