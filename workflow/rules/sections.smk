rule predict_section:
    input:
        section=lambda wildcards: config["sections"]["inputs"][wildcards.name],
        models=blend_outputs("model.pt", folds=True),
        members=layout.blend_file("members.json"),
        cv=layout.blend_file("cv.json"),
    output:
        directory(layout.result("sections", "{name}")),
    log:
        layout.log("predict_section", "{name}"),
    benchmark:
        layout.benchmark("predict_section", "{name}")
    conda:
        "../../envs/saltseg.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        cuda_graphs=CUDA_GRAPHS,
        jobs_per_gpu=JOBS_PER_GPU,
        batch_size=PREDICT_BATCH,
    params:
        blend=lambda wildcards, input: Path(input.members).parent,
        stride=config["sections"]["stride"],
        axis=config["sections"]["axis"],
        tta=",".join(config["predict"]["tta"]),
        numerics=NUMERICS,
        threshold=config["submission"]["threshold"],
    shell:
        "python -m saltseg predict-section --models {params.blend} --cv {input.cv}"
        " --input {input.section} --out {output} --stride {params.stride}"
        " --axis {params.axis} --batch-size {resources.batch_size}"
        " --tta {params.tta} --threshold {params.threshold} --device {params.numerics[device]}"
        " --amp {params.numerics[amp]} --channels-last {params.numerics[channels_last]}"
        " --threads {threads} --cuda-graphs {resources.cuda_graphs}"
        " --jobs-per-gpu {resources.jobs_per_gpu} > {log} 2>&1"


rule sections:
    input:
        expand(layout.result("sections", "{name}"), name=config["sections"]["inputs"]),
