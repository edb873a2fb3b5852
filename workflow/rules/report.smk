rule report:
    input:
        metrics=get_report_metrics(),
        histories=get_report_histories(),
        compatibility="results/compatibility.json",
    output:
        html="results/report.html",
        metrics="results/metrics.tsv",
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../../envs/stagewise.yaml"
    threads: 1
    params:
        title=config["report"]["title"],
        models=get_evaluated_models(),
        version=VERSION,
    script:
        "../scripts/report.py"
