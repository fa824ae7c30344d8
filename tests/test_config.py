import pytest

from training.engine.config import ConfigError, RunConfig, parse_config


def test_defaults_are_valid():
    assert parse_config({}) == RunConfig()


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"lr": -1}, "lr", "must lie in (0.0, 10.0], got -1.0"),
        ({"lr": "fast"}, "lr", "must be a number, got 'fast'"),
        ({"epochs": 0}, "epochs", "must be from 1 to 10000, got 0"),
        ({"epochs": 2.5}, "epochs", "must be an integer, got 2.5"),
        ({"batch_size": True}, "batch_size", "must be an integer, got True"),
        ({"optimizer": "lbfgs"}, "optimizer", "must be one of sgd, adam, adamw, got 'lbfgs'"),
        ({"precision": "int8"}, "precision", "must be one of fp32, bf16, fp16, got 'int8'"),
        ({"hidden_sizes": []}, "hidden_sizes", "must be a non-empty list of integers, got []"),
        ({"hidden_sizes": [64, 0]}, "hidden_sizes[1]", "must be from 1 to 65536, got 0"),
        ({"dropout": 1.0}, "dropout", "must lie in [0.0, 1.0), got 1.0"),
        ({"val_split": 0}, "val_split", "must lie in (0.0, 0.9], got 0.0"),
        ({"gradient_checkpointing": "yes"}, "gradient_checkpointing", "must be true or false, got 'yes'"),
    ],
)
def test_bad_values_name_field(raw, field, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.field == field
    assert caught.value.message == message


def test_unknown_parameter_lists_known_ones():
    with pytest.raises(ConfigError) as caught:
        parse_config({"learning_rate": 0.1})
    assert caught.value.field == "learning_rate"
    assert caught.value.message.startswith("unknown parameter; expected one of batch_size, conv_channels")


def test_non_object_rejected():
    with pytest.raises(ConfigError) as caught:
        parse_config([1, 2])
    assert str(caught.value) == "config: must be a JSON object, got list"
