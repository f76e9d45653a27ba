rule report_curves:
    input:
        fold_outputs("history.csv"),
    output:
        report(
            layout.result("report", "curves", "{stage}_{model}.png"),
            caption="../report/curves.rst",
            category="Training",
            subcategory="{stage}",
        ),
    log:
        layout.log("report_curves", "{stage}_{model}"),
    benchmark:
        layout.benchmark("report_curves", "{stage}_{model}")
    conda:
        "../../envs/saltseg.yaml"
    shell:
        "python -m saltseg plot-curves --history {input} --title '{wildcards.stage} {wildcards.model}'"
        " --out {output} > {log} 2>&1"


rule report_gallery:
    input:
        data=DATA_DIR,
        oof=layout.blend_file("oof.parquet"),
        cv=layout.blend_file("cv.json"),
    output:
        gallery=report(
            layout.result("report", "oof_gallery.png"),
            caption="../report/gallery.rst",
            category="OOF predictions",
        ),
        counts=layout.result("report", "oof_counts.json"),
    log:
        layout.log("report_gallery", "report_gallery"),
    benchmark:
        layout.benchmark("report_gallery", "report_gallery")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN),
        tile=config["tile_size"],
        threshold=config["submission"]["threshold"],
    shell:
        "python -m saltseg plot-gallery --data-dir {input.data} --tile-size {params.tile}"
        " --oof {input.oof} --cv {input.cv} --threshold {params.threshold}"
        " --out {output.gallery} --counts {output.counts} > {log} 2>&1"


rule report_mosaics:
    input:
        data=DATA_DIR,
        layout=layout.result("mosaic", "tiles.parquet"),
        before=layout.blend_file("test.parquet"),
        after=layout.result("postprocess", "masks.parquet"),
        oof=layout.blend_file("oof.parquet"),
        cv=layout.blend_file("cv.json"),
    output:
        report(
            directory(layout.result("report", "mosaics")),
            patterns=["{name}.png"],
            caption="../report/mosaics_postprocess.rst",
            category="Mosaics",
        ),
    log:
        layout.log("report_mosaics", "report_mosaics"),
    benchmark:
        layout.benchmark("report_mosaics", "report_mosaics")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
        tile=config["tile_size"],
        threshold=config["submission"]["threshold"],
        n=config["mosaic"]["draw"],
    shell:
        "python -m saltseg plot-mosaics --data-dir {input.data} --tile-size {params.tile}"
        " --layout {input.layout} --before {input.before} --after {input.after} --oof {input.oof}"
        " --cv {input.cv} --threshold {params.threshold} --n {params.n}"
        " --out-dir {output} > {log} 2>&1"


rule report_runtimes:
    input:
        run_benchmarks,
    output:
        report(
            layout.result("report", "runtimes.png"),
            caption="../report/runtimes.rst",
            category="Run time",
        ),
    log:
        layout.log("report_runtimes", "report_runtimes"),
    benchmark:
        layout.benchmark("report_runtimes", "report_runtimes")
    conda:
        "../../envs/saltseg.yaml"
    shell:
        "python -m saltseg plot-runtimes --benchmarks {input} --out {output} > {log} 2>&1"
