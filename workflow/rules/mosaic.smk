rule mosaic:
    input:
        data=DATA_DIR,
    output:
        tiles=layout.result("mosaic", "tiles.parquet"),
        pairs=layout.result("mosaic", "pairs.parquet"),
        png=report(
            directory(layout.result("mosaic", "png")),
            patterns=["{name}.png"],
            caption="../report/mosaic.rst",
            category="Mosaics",
        ),
    log:
        layout.log("mosaic", "mosaic"),
    benchmark:
        layout.benchmark("mosaic", "mosaic")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
        tile=config["tile_size"],
        draw=config["mosaic"]["draw"],
    shell:
        "python -m saltseg mosaic --data-dir {input.data} --tile-size {params.tile}"
        " --tiles {output.tiles} --pairs {output.pairs} --png-dir {output.png}"
        " --draw {params.draw} > {log} 2>&1"


rule context:
    input:
        data=DATA_DIR,
        layout=layout.result("mosaic", "tiles.parquet"),
        pairs=layout.result("mosaic", "pairs.parquet"),
    output:
        layout.context_file("{margin}"),
    log:
        layout.log("context", "margin{margin}"),
    benchmark:
        layout.benchmark("context", "margin{margin}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
        tile=config["tile_size"],
        max_ratio=config["mosaic"]["trust_ratio"],
    shell:
        "python -m saltseg context --data-dir {input.data} --tile-size {params.tile}"
        " --layout {input.layout} --pairs {input.pairs} --margin {wildcards.margin}"
        " --max-ratio {params.max_ratio} --out {output} > {log} 2>&1"


rule postprocess:
    input:
        data=DATA_DIR,
        layout=layout.result("mosaic", "tiles.parquet"),
        folds=layout.result("folds.csv"),
        oof=layout.blend_file("oof.parquet"),
        probs=layout.blend_file("test.parquet"),
        cv=layout.blend_file("cv.json"),
    output:
        masks=layout.result("postprocess", "masks.parquet"),
        report=layout.result("postprocess", "report.json"),
        changes=layout.result("postprocess", "changes.csv"),
    log:
        layout.log("postprocess", "postprocess"),
    benchmark:
        layout.benchmark("postprocess", "postprocess")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
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
