rule evaluate:
    input:
        model=get_eval_model,
        test="results/data/target/test.h5",
    output:
        metrics="results/{model}/test_metrics.json",
        predictions="results/{model}/test_predictions.h5",
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/evaluate/{model}.tsv"
    conda:
        "../../envs/stagewise.yaml"
    threads: 1
    params:
        evaluation=config["evaluation"],
        version=VERSION,
    script:
        "../scripts/evaluate.py"
