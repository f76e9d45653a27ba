rule mosaic:
    input:
        data=DATA_DIR,
    output:
        tiles="results/mosaic/tiles.parquet",
        pairs="results/mosaic/pairs.parquet",
        png=report(
            directory("results/mosaic/png"),
            patterns=["{name}.png"],
            caption="../report/mosaic.rst",
            category="Mosaics",
        ),
    log:
        "results/logs/mosaic/mosaic.log",
    benchmark:
        "results/benchmarks/mosaic/mosaic.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        draw=config["mosaic"]["draw"],
    shell:
        "python -m saltseg mosaic --data-dir {input.data} --tile-size {params.tile}"
        " --tiles {output.tiles} --pairs {output.pairs} --png-dir {output.png}"
        " --draw {params.draw} > {log} 2>&1"


rule context:
    input:
        data=DATA_DIR,
        layout="results/mosaic/tiles.parquet",
        pairs="results/mosaic/pairs.parquet",
    output:
        "results/context/margin{margin}.npz",
    log:
        "results/logs/context/margin{margin}.log",
    benchmark:
        "results/benchmarks/context/margin{margin}.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        max_ratio=config["mosaic"]["trust_ratio"],
    shell:
        "python -m saltseg context --data-dir {input.data} --tile-size {params.tile}"
        " --layout {input.layout} --pairs {input.pairs} --margin {wildcards.margin}"
        " --max-ratio {params.max_ratio} --out {output} > {log} 2>&1"


rule postprocess:
    input:
        data=DATA_DIR,
        layout="results/mosaic/tiles.parquet",
        folds="results/folds.csv",
        oof="results/blend/oof.parquet",
        probs="results/blend/test.parquet",
        cv="results/blend/cv.json",
    output:
        masks="results/postprocess/masks.parquet",
        report="results/postprocess/report.json",
        changes="results/postprocess/changes.csv",
    log:
        "results/logs/postprocess/postprocess.log",
    benchmark:
        "results/benchmarks/postprocess/postprocess.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        n_folds=config["folds"]["n_folds"],
        threshold=config["submission"]["threshold"],
        enabled=str(config["postprocess"]["enabled"]).lower(),
    shell:
        "python -m saltseg postprocess --data-dir {input.data} --tile-size {params.tile}"
        " --layout {input.layout} --folds {input.folds} --n-folds {params.n_folds}"
        " --oof {input.oof} --probs {input.probs} --cv {input.cv}"
        " --threshold {params.threshold} --enabled {params.enabled} --masks {output.masks}"
        " --report {output.report} --changes {output.changes} > {log} 2>&1"
