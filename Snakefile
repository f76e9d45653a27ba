from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/survey.smk"  # before data and mosaic: its rules take their place
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/stage1.smk"
include: "workflow/rules/pseudo.smk"
include: "workflow/rules/stage2.smk"
include: "workflow/rules/stage3.smk"
include: "workflow/rules/blend.smk"
include: "workflow/rules/mosaic.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/sections.smk"


# Cheap jobs (parquet/CSV/plots, seconds each, no torch) run on the submitting node when a
# cluster executor is used, instead of waiting in the queue; locally this changes nothing.
localrules:
    all,
    synthetic_data,
    folds,
    merge_folds,
    ensemble,
    pseudo_fold,
    pseudo,
    blend,
    mosaic,
    postprocess,
    submission,
    summary,
    report_curves,
    report_gallery,
    report_mosaics,
    report_runtimes,
    stage1,
    sections,


rule all:
    default_target: True
    input:
        layout.result("submission.csv"),
        layout.result("summary.csv"),
        [layout.pseudo_file(stage) for stage in list(STAGES)[:-1]],
        report_figures(),
        layout.result("report", "runtimes.png"),
