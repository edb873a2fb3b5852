from stagewise.entry import run_step
from stagewise.steps import report

run_step(report.run, snakemake)  # noqa: F821 (injected by Snakemake)
