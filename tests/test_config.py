import copy

import pytest
import yaml

from saltseg.config import model_params, validate_config
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
        (lambda c: c.update(tile_size="101"), "config: tile_size: '101' is not of type"),
        (
            lambda c: c["runtime"].update(device="gpu"),
            "config: runtime.device: 'gpu' does not match",
        ),
        (lambda c: c["stage1"].update(models=["nope"]), "config: stage1.models: 'nope' is not"),
        (
            lambda c: c["models"]["unet_r10"]["phases"][0].update(optimizer="lamb"),
            "config: models.unet_r10.phases.0.optimizer: 'lamb' is not one of",
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
