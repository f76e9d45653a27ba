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
        model_cvs=stage_outputs("cv.json"),
        fold_metrics=stage_all_folds("metrics.json"),
        ensemble_cvs=expand("results/{stage}/ensemble/cv.json", stage=STAGES),
        blend_cv="results/blend/cv.json",
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
        " --fold-metrics {input.fold_metrics} --ensemble-cvs {input.ensemble_cvs}"
        " --blend-cv {input.blend_cv}"
        " --postprocess {input.postprocess} --out {output} > {log} 2>&1"
