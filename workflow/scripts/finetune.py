from stagewise.entry import run_step
from stagewise.steps import finetune

run_step(finetune.run, snakemake)  # noqa: F821 (injected by Snakemake)
