rule report_curves:
    input:
        fold_outputs("history.csv"),
    output:
        report(
            "results/report/curves/{stage}_{model}.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{stage}",
        ),
    log:
        "results/logs/report_curves/{stage}_{model}.log",
    benchmark:
        "results/benchmarks/report_curves/{stage}_{model}.tsv"
    conda:
        "../../envs/saltseg.yaml"
    shell:
        "python -m saltseg plot-curves --history {input} --title '{wildcards.stage} {wildcards.model}'"
        " --out {output} > {log} 2>&1"


rule report_gallery:
    input:
        data=DATA_DIR,
        oof="results/blend/oof.parquet",
        cv="results/blend/cv.json",
    output:
        gallery=report(
            "results/report/oof_gallery.png",
            caption="../report/gallery.rst",
            category="OOF predictions",
        ),
        counts="results/report/oof_counts.json",
    log:
        "results/logs/report_gallery/report_gallery.log",
    benchmark:
        "results/benchmarks/report_gallery/report_gallery.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        threshold=config["submission"]["threshold"],
    shell:
        "python -m saltseg plot-gallery --data-dir {input.data} --tile-size {params.tile}"
        " --oof {input.oof} --cv {input.cv} --threshold {params.threshold}"
        " --out {output.gallery} --counts {output.counts} > {log} 2>&1"


rule report_mosaics:
    input:
        data=DATA_DIR,
        layout="results/mosaic/tiles.parquet",
        before="results/blend/test.parquet",
        after="results/postprocess/masks.parquet",
        oof="results/blend/oof.parquet",
        cv="results/blend/cv.json",
    output:
        report(
            directory("results/report/mosaics"),
            patterns=["{name}.png"],
            caption="../report/mosaics_postprocess.rst",
            category="Mosaics",
        ),
    log:
        "results/logs/report_mosaics/report_mosaics.log",
    benchmark:
        "results/benchmarks/report_mosaics/report_mosaics.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
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
            "results/report/runtimes.png",
            caption="../report/runtimes.rst",
            category="Run time",
        ),
    log:
        "results/logs/report_runtimes/report_runtimes.log",
    benchmark:
        "results/benchmarks/report_runtimes/report_runtimes.tsv"
    conda:
        "../../envs/saltseg.yaml"
    shell:
        "python -m saltseg plot-runtimes --benchmarks {input} --out {output} > {log} 2>&1"
