rule submission:
    input:
        data=DATA_DIR,
        masks=layout.result("postprocess", "masks.parquet"),
    output:
        report(
            layout.result("submission.csv"),
            caption="../report/submission.rst",
            category="Submission",
        ),
    log:
        layout.log("submission", "submission"),
    benchmark:
        layout.benchmark("submission", "submission")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TEST),
        tile=config["tile_size"],
    shell:
        "python -m saltseg submit --masks {input.masks} --data-dir {input.data}"
        " --tile-size {params.tile} --out {output} > {log} 2>&1"


rule summary:
    input:
        model_cvs=stage_outputs("cv.json"),
        fold_metrics=stage_all_folds("metrics.json"),
        ensemble_cvs=expand(layout.ensemble_file("{stage}", "cv.json"), stage=STAGES),
        blend_cv=layout.blend_file("cv.json"),
        postprocess=layout.result("postprocess", "report.json"),
        data=DATA_DIR,
        test_maps=[
            *stage_outputs("test.parquet"),
            *expand(layout.ensemble_file("{stage}", "test.parquet"), stage=STAGES),
            layout.blend_file("test.parquet"),
        ],
        submission=layout.result("submission.csv"),
    output:
        report(
            layout.result("summary.csv"),
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        layout.log("summary", "summary"),
    benchmark:
        layout.benchmark("summary", "summary")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TEST, TRUTH),
        tile=config["tile_size"],
    shell:
        "python -m saltseg summary --model-cvs {input.model_cvs}"
        " --fold-metrics {input.fold_metrics} --ensemble-cvs {input.ensemble_cvs}"
        " --blend-cv {input.blend_cv}"
        " --postprocess {input.postprocess} --data-dir {input.data} --tile-size {params.tile}"
        " --submission {input.submission} --out {output} > {log} 2>&1"
