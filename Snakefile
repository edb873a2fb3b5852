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


localrules:
    all,
    check_compatibility,
    report,


rule all:
    input:
        get_final_outputs(),


onsuccess:
    print(f"stagewise: report at {os.path.abspath('results/report.html')}")
