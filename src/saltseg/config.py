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
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path)))
    )
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(f"config: {where}", error.message.splitlines()[0][:200])
    for name in config["stage1"]["models"]:
        if name not in config["models"]:
            raise InputError("config: stage1.models", f"{name!r} is not a key of models")
    return config


def model_params(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A model's resolved training parameters: its definition, with the default augmentations."""
    model = copy.deepcopy(config["models"][name])
    model.setdefault("augment", copy.deepcopy(config["augment"]))
    return model
