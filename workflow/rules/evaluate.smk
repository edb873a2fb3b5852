rule evaluate:
    input:
        model=get_eval_model,
        test="results/data/target/test.h5",
        reference=get_knn_reference(),
        summary="results/data/target/summary.json",
    output:
        metrics=report(
            "results/{model}/test_metrics.json",
            caption="../report/test_metrics.rst",
            category="Models",
            labels={"model": "{model}"},
        ),
        predictions="results/{model}/test_predictions.h5",
    log:
        sw_paths.log("evaluate"),
    benchmark:
        sw_paths.benchmark("evaluate")
    conda:
        "../../envs/stagewise.yaml"
    threads: THREADS
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_eval_runtime,
    params:
        evaluation=get_evaluation_params(),
        version=VERSION,
    script:
        "../scripts/evaluate.py"
