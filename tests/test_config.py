import copy

import pytest
import yaml

from saltseg.config import (
    blend_members,
    init_source,
    model_params,
    pseudo_source,
    stage_models,
    validate_config,
)
from saltseg.errors import InputError


@pytest.fixture
def config(repo):
    return yaml.safe_load((repo / "config.yaml").read_text())


@pytest.fixture
def schema(repo):
    return repo / "workflow/schemas/config.schema.yaml"


def test_shipped_config_is_valid_and_defaults_are_filled(config, schema):
    del config["predict"]
    config["models"]["unet_r10"]["phases"] = [{"epochs": 2}]
    validate_config(config, schema)
    assert config["predict"] == {"tta": ["none", "hflip"], "batch_size": 64}
    phase = config["models"]["unet_r10"]["phases"][0]
    assert phase["optimizer"] == "adam" and phase["epochs"] == 2 and phase["snapshots"] == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["folds"].update(n_fold=3), "config: folds: Additional properties"),
        (lambda c: c["folds"].update(n_folds=1), "config: folds.n_folds: 1 is less than"),
        (lambda c: c.update(tile_size="big"), "config: tile_size: 'big' is not of type"),
        (
            lambda c: c["runtime"].update(device="gpu"),
            "config: runtime.device: 'gpu' does not match",
        ),
        (lambda c: c["stage1"].update(models=["nope"]), "config: stage1.models: 'nope' is not"),
        (
            lambda c: c["models"]["unet_r10"]["phases"][0].update(optimizer="lamb"),
            "config: models.unet_r10.phases.0.optimizer: 'lamb' is not one of",
        ),
        (lambda c: c.update(stages=[2, 3]), "config: stages: expected stage 1"),
        (lambda c: c["stage2"].update(models=[]), "config: stage2.models: expected at least one"),
        (
            lambda c: c["models"]["unet_r10"]["phases"][0].update(data="pseudo"),
            "config: models.unet_r10.phases: stage-1 models learn from labels only",
        ),
        (
            lambda c: c["blend"]["models"].append({"stage": 1, "model": "unet_r10_mix"}),
            "config: blend.models: 'unet_r10_mix' is not a model of stage1.models",
        ),
        (
            lambda c: c["models"]["unet_r10"]["phases"][0].update(data="test"),
            "config: models.unet_r10.phases.0.data: 'test' is not one of",
        ),
    ],
)
def test_a_wrong_key_or_value_is_named_in_one_line(config, schema, change, message):
    change(config)
    with pytest.raises(InputError) as err:
        validate_config(config, schema)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_model_params_take_the_default_augmentations(config, schema):
    validate_config(config, schema)
    params = model_params(config, "unet_r10")
    assert params["augment"] == config["augment"]
    own = copy.deepcopy(config)
    own["models"]["unet_r10"]["augment"] = [{"name": "HorizontalFlip", "p": 1.0}]
    assert model_params(own, "unet_r10")["augment"] == [{"name": "HorizontalFlip", "p": 1.0}]


def test_stages_that_do_not_run_drop_out_of_the_blend(config, schema):
    validate_config(config, schema)
    assert stage_models(config) == {
        "stage1": ["unet_r10"],
        "stage2": ["unet_r10_student"],
        "stage3": ["unet_r10_student"],
    }
    assert pseudo_source(config, "stage1") is None
    assert pseudo_source(config, "stage3") == "stage2"
    assert init_source(config, "stage3", "unet_r10_student") == ("stage2", "unet_r10_student")
    assert blend_members(config) == [  # fitted: every model of every stage is a candidate
        ("stage1", "unet_r10", 1.0),
        ("stage2", "unet_r10_student", 1.0),
        ("stage3", "unet_r10_student", 1.0),
    ]
    config["blend"]["method"] = "fixed"
    assert blend_members(config) == [("stage3", "unet_r10_student", 1.0)]
    config["blend"]["models"] = [
        {"stage": 2, "model": "unet_r10_student", "weight": 1.0},
        {"stage": 3, "model": "unet_r10_student", "weight": 3.0},
    ]
    config["stages"] = [1, 3]  # stage 3 then learns from stage 1's labels and weights
    assert pseudo_source(config, "stage3") == "stage1"
    assert init_source(config, "stage3", "unet_r10_student") == ("stage1", "unet_r10")
    assert blend_members(config) == [("stage3", "unet_r10_student", 3.0)]
    config["stages"] = [1]
    config["blend"]["models"] = []
    config["stage1"]["models"] = ["unet_r10", "pad128"]
    both = [("stage1", "unet_r10", 1.0), ("stage1", "pad128", 1.0)]
    assert blend_members(config) == both  # fixed, no members: the last stage's models
    config["blend"]["method"] = "fit"
    assert blend_members(config) == both


def test_a_student_starts_from_a_teacher_of_its_own_network_only(config, schema):
    config["stage1"]["models"] = ["pad128"]
    with pytest.raises(InputError, match="models.unet_r10_student.init: expected a model of the"):
        validate_config(config, schema)
    config["stage1"]["models"] = ["unet_r10"]
    config["models"]["unet_r10"]["init"] = "teacher"
    with pytest.raises(InputError, match="expected scratch in stage1"):
        validate_config(config, schema)


def test_stages_from_the_command_line_are_read_as_numbers(config, schema):
    config["stages"] = ["1", "3"]  # what `snakemake --config stages=[1,3]` passes
    validate_config(config, schema)
    assert config["stages"] == [1, 3] and list(stage_models(config)) == ["stage1", "stage3"]


def test_numbers_given_as_strings_on_the_command_line_are_read_as_numbers(config, schema):
    config["folds"]["n_folds"] = "3"  # what `--config 'folds={"n_folds": 3}'` passes
    config["models"]["unet_r10"]["phases"][0]["lr"] = "0.01"
    validate_config(config, schema)
    assert (
        config["folds"]["n_folds"] == 3 and config["models"]["unet_r10"]["phases"][0]["lr"] == 0.01
    )
    config["folds"]["n_folds"] = "three"
    with pytest.raises(InputError, match="config: folds.n_folds: 'three' is not of type 'integer'"):
        validate_config(config, schema)


#: the run settings every workflow profile repeats from the default one (Snakemake reads a
#: single workflow profile and has no inheritance between profiles)
SHARED_PROFILE_KEYS = ("printshellcmds", "rerun-triggers", "rerun-incomplete", "show-failed-logs")


@pytest.mark.parametrize("profile", ["cpu", "fast", "full", "slurm"])
def test_profiles_repeat_the_default_profiles_run_settings_unchanged(repo, profile):
    """A recipe profile adds its recipe, cores and GPU slots; the rest cannot drift away."""
    profiles = repo / "workflow" / "profiles"
    default = yaml.safe_load((profiles / "default" / "config.yaml").read_text())
    settings = yaml.safe_load((profiles / profile / "config.yaml").read_text())
    assert {k: settings.get(k) for k in SHARED_PROFILE_KEYS} == {
        k: default[k] for k in SHARED_PROFILE_KEYS
    }
