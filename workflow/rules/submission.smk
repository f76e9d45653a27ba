rule submission:
    input:
        data=DATA_DIR,
        probs="results/stage1/ensemble/test.parquet",
        cv="results/stage1/ensemble/cv.json",
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
        threshold=config["submission"]["threshold"],
    shell:
        "python -m saltseg submit --probs {input.probs} --cv {input.cv} --data-dir {input.data}"
        " --tile-size {params.tile} --threshold {params.threshold} --out {output} > {log} 2>&1"
