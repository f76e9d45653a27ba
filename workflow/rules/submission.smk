rule submission:
    input:
        data=DATA_DIR,
        masks="results/postprocess/masks.parquet",
    output:
        report(
            "results/submission.csv",
            caption="../report/submission.rst",
            category="Submission",
        ),
    log:
        "results/logs/submission/submission.log",
    benchmark:
        "results/benchmarks/submission/submission.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
    shell:
        "python -m saltseg submit --masks {input.masks} --data-dir {input.data}"
        " --tile-size {params.tile} --out {output} > {log} 2>&1"


rule summary:
    input:
        model_cvs=stage1_outputs("cv.json"),
        fold_metrics=expand(
            "results/stage1/{model}/fold{fold}/metrics.json",
            model=STAGE1_MODELS,
            fold=FOLDS,
        ),
        ensemble_cv="results/stage1/ensemble/cv.json",
        postprocess="results/postprocess/report.json",
    output:
        report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "results/logs/summary/summary.log",
    benchmark:
        "results/benchmarks/summary/summary.tsv"
    conda:
        "../../envs/saltseg.yaml"
    shell:
        "python -m saltseg summary --model-cvs {input.model_cvs}"
        " --fold-metrics {input.fold_metrics} --ensemble-cv {input.ensemble_cv}"
        " --postprocess {input.postprocess} --out {output} > {log} 2>&1"
