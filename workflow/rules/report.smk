rule report:
    input:
        metrics=get_report_metrics(),
        predictions=get_report_predictions(),
        histories=get_report_histories(),
        compatibility="results/compatibility.json",
        benchmarks=get_report_benchmarks(),
    output:
        html=report(
            "results/report.html",
            caption="../report/report_html.rst",
            category="Report",
            labels={"file": "report.html"},
        ),
        metrics=report(
            "results/metrics.tsv",
            caption="../report/metrics_tsv.rst",
            category="Metrics",
            labels={"table": "every model"},
        ),
        figures=report(
            directory("results/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        sw_paths.log("report"),
    benchmark:
        sw_paths.benchmark("report")
    localrule: True
    conda:
        "../../envs/stagewise.yaml"
    threads: 1
    params:
        title=config["report"]["title"],
        models=get_evaluated_models(),
        evaluation=config["evaluation"],
        version=VERSION,
    script:
        "../scripts/report.py"
