from stagewise.entry import run_step
from stagewise.steps import pretrain

run_step(pretrain.run, snakemake)  # noqa: F821 (injected by Snakemake)
