"""Config validation against the JSON schema, filling defaults, with one-line errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from saltseg.errors import InputError


def _with_defaults(validator_class):
    """A validator that also writes each property's ``default`` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it; return it.

    Raises:
        InputError: ``config: <key path>: <problem>`` for the first error found.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    while True:
        errors = sorted(
            validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path)))
        )
        if not any(_coerce_number(config, error) for error in errors):
            break
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(f"config: {where}", error.message.splitlines()[0][:200])
    _check_stages(config)
    return config


def _coerce_number(config: dict[str, Any], error: jsonschema.ValidationError) -> bool:
    """Turn a numeric string where the schema wants a number into one; whether it did.

    Snakemake's ``--config 'folds={"n_folds": 3}'`` or ``stages=[1,3]`` passes nested values
    as strings.
    """
    wanted = error.validator_value if error.validator == "type" else None
    if wanted not in ("integer", "number") or not isinstance(error.instance, str):
        return False
    try:
        value = int(error.instance) if wanted == "integer" else float(error.instance)
    except ValueError:
        return False
    *parents, last = error.absolute_path
    target = config
    for key in parents:
        target = target[key]
    target[last] = value
    return True


def _check_stages(config: dict[str, Any]) -> None:
    """Stage lists name known models; stage 1 learns from labels only; members exist."""
    if 1 not in config["stages"]:
        raise InputError(
            "config: stages", "expected stage 1 in the list (later stages learn from it)"
        )
    for stage in config["stages"]:
        key = f"stage{stage}"
        if not config[key]["models"]:
            raise InputError(
                f"config: {key}.models", "expected at least one model for a stage that runs"
            )
        for name in config[key]["models"]:
            if name not in config["models"]:
                raise InputError(f"config: {key}.models", f"{name!r} is not a key of models")
            uses = {phase.get("data", "train") for phase in config["models"][name]["phases"]}
            if stage == 1 and uses != {"train"}:
                raise InputError(
                    f"config: models.{name}.phases",
                    "stage-1 models learn from labels only (data: train); pseudo needs stage 2+",
                )
        for name in config[key]["models"]:
            init_source(config, key, name)
    for member in config["blend"]["models"]:
        if member["model"] not in config[f"stage{member['stage']}"]["models"]:
            raise InputError(
                "config: blend.models",
                f"{member['model']!r} is not a model of stage{member['stage']}.models",
            )


def stage_models(config: dict[str, Any]) -> dict[str, list[str]]:
    """``{"stage1": [model, ...], ...}`` for the stages that run, in order."""
    return {f"stage{s}": list(config[f"stage{s}"]["models"]) for s in sorted(config["stages"])}


def pseudo_source(config: dict[str, Any], stage: str) -> str | None:
    """The stage whose pseudo-labels ``stage`` learns from: the previous stage that runs."""
    stages = list(stage_models(config))
    index = stages.index(stage)
    return stages[index - 1] if index else None


def blend_members(config: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(stage, model, weight)`` of the blend: configured members of stages that run, or
    (none left) every model of every stage that runs (``blend.method: fit``, whose weights are
    fitted) or of the last stage (``fixed``), with equal weights."""
    stages = stage_models(config)
    members = [
        (f"stage{m['stage']}", m["model"], float(m.get("weight", 1.0)))
        for m in config["blend"]["models"]
        if f"stage{m['stage']}" in stages
    ]
    if members:
        return members
    if config["blend"]["method"] == "fit":
        return [(stage, model, 1.0) for stage, models in stages.items() for model in models]
    last = list(stages)[-1]
    return [(last, model, 1.0) for model in stages[last]]


def init_source(config: dict[str, Any], stage: str, model: str) -> tuple[str, str] | None:
    """``(stage, model)`` whose fold-k weights ``model`` starts from in ``stage``: with
    ``init: teacher`` the first model of the previous stage that runs with the same network
    (arch and model settings); None with ``init: scratch``.

    Raises:
        InputError: ``init: teacher`` in the first stage, or no such model in the previous one.
    """
    if config["models"][model].get("init", "scratch") == "scratch":
        return None
    source = pseudo_source(config, stage)
    where = f"config: models.{model}.init"
    if source is None:
        raise InputError(where, f"expected scratch in {stage}: teacher needs a previous stage")
    ours = config["models"][model]
    for name in stage_models(config)[source]:
        theirs = config["models"][name]
        if (ours["arch"], ours.get("model", {})) == (theirs["arch"], theirs.get("model", {})):
            return source, name
    raise InputError(where, f"expected a model of the same network in {source} to start from")


def model_params(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A model's resolved training parameters: its definition, with the default augmentations."""
    model = copy.deepcopy(config["models"][name])
    model.setdefault("augment", copy.deepcopy(config["augment"]))
    return model
