from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/compatibility.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# all, check_compatibility, report and (for light raw data) prepare_data are `localrule`s: they run
# where snakemake runs, also when this workflow is a module whose rules are renamed.


rule all:
    input:
        get_final_outputs(),
    localrule: True


onsuccess:
    # only when this run's targets include the report (not, e.g., `snakemake results/pretrain/model.pt`)
    if any(job.rule.name == "report" for job in workflow.dag.jobs):
        print(f"stagewise: report at {os.path.abspath('results/report.html')}")
