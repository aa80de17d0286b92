"""params.yaml parsed once into frozen, validated sections: every bound checked, unknown keys refused, and no
default in code that differs from the shipped file."""
import inspect

import pydantic
import pytest
import yaml
from conftest import ROOT

from poisongate import config as configuration
from poisongate.attacks import ATTACKS
from poisongate.detectors.registry import DETECTORS
from poisongate.errors import ConfigError

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(key: str, value):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def test_the_shipped_params_parse_into_frozen_sections(config):
    assert (config.train.epochs == SHIPPED["train"]["epochs"]
            and config.validation.false_refusal_rate == SHIPPED["validate"]["false_refusal_rate"])
    with pytest.raises(pydantic.ValidationError):
        config.train.epochs = 1  # parsed once: nothing changes it mid-run


@pytest.mark.parametrize("key,value,shown", [
    ("train.epochs", "1e9", "train.epochs = '1e9': Input should be a valid integer"),
    ("train.epochs", 0, "train.epochs = 0: Input should be greater than or equal to 1"),
    ("train.batch_size", 0, "train.batch_size = 0: Input should be greater than or equal to 1"),
    ("train.learning_rate", -0.1, "train.learning_rate = -0.1: Input should be greater than 0"),
    ("train.model", "transformer", "train.model = 'transformer': Input should be 'mlp' or 'cnn'"),
    ("crossval.folds", 1, "crossval.folds = 1: Input should be greater than or equal to 2"),
    ("filter.false_positive_rate", 2, "filter.false_positive_rate = 2: Input should be less than 1"),
    ("filter.false_positive_rate", 0, "filter.false_positive_rate = 0: Input should be greater than 0"),
    ("filter.calibration_folds", 1, "filter.calibration_folds = 1: Input should be greater than or equal to 2"),
    ("filter.detectors.duplicates.radius", -1,
     "filter.detectors = {...}: duplicates: radius = -1: Input should be greater than 0"),
    ("filter.detectors.knn_label.k", "ten",
     "filter.detectors = {...}: knn_label: k = 'ten': Input should be a valid integer"),
    ("validate.range_mostly", 5, "validate.range_mostly = 5: Input should be less than or equal to 1"),
    ("promote.min_accuracy", 1.5, "promote.min_accuracy = 1.5: Input should be less than or equal to 1"),
    ("data.split.reference_fraction", 0.9, "data.split = {...}: reference_fraction + holdout_fraction must be < 1"),
    ("data.min_rows", 0, "data.min_rows = 0: Input should be greater than or equal to 1"),
    ("simulate.attack", "nope", "simulate.attack = 'nope': must be none or one of"),
    ("redteam.workers", 0, "redteam.workers = 0: Input should be greater than or equal to 1"),
    ("data.batch", 6, "data = {...}: batch 6 but split.batches is 6: use 0..5"),
    ("data.source", "incoming.csv", "data = {...}: a source of your own needs its trusted reference and holdout"),
    ("validate.false_refusal_rate", 0.0, "validate.false_refusal_rate = 0.0: Input should be greater than 0"),
    ("campaign.checks", ["drift", "nope"], "campaign.checks.1 = 'nope': Input should be 'class_mix'"),
    ("promote.alpha", 1.0, "promote.alpha = 1.0: Input should be less than 1"),
    ("simulate.options.noisy_duplicate", {"copies": 3}, "simulate.options = {...}: unknown attack 'noisy_duplicate'"),
    ("simulate.options.noisy_duplicates.copy", 3, "simulate.options = {...}: noisy_duplicates.copy: not an option"),
    ("simulate.options.noisy_duplicates.copies", "ten",
     "simulate.options = {...}: noisy_duplicates.copies = 'ten': expected int"),
])
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_what_is_allowed(key, value, shown):
    with pytest.raises(ConfigError) as e:
        configuration.parse(with_value(key, value), "params.yaml")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"params.yaml: {shown}"), message
    assert message.endswith("; fix it in params.yaml")


def test_unknown_keys_and_detectors_are_refused():
    with pytest.raises(ConfigError, match=r"train\.epoch = 3: Extra inputs are not permitted"):
        configuration.parse(with_value("train.epoch", 3), "params.yaml")
    with pytest.raises(ConfigError, match=r"unknown detector 'isolation_forest'"):
        configuration.parse(with_value("filter.detectors.isolation_forest", {}), "params.yaml")
    with pytest.raises(ConfigError, match=r"filter\.detectors = \{\.\.\.\}: knn_label: kk = 3: Extra inputs"):
        configuration.parse(with_value("filter.detectors.knn_label", {"kk": 3}), "params.yaml")


def test_a_file_that_is_not_params_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    for text, expected in (("data: [unclosed", "not valid YAML"), ("- a list", "expected a mapping of sections")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=expected) as e:
            configuration.load(path)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not found; run `poisongate init"):
        configuration.load(tmp_path / "missing" / "params.yaml")


def test_no_default_in_code_differs_from_params_yaml():
    """Detector options and attack options have defaults in code (a detector switched on without options); each
    equals what the shipped params.yaml says. false_positive_rate's default means "filter.false_positive_rate"."""
    for name, options in SHIPPED["filter"]["detectors"].items():
        fields = DETECTORS[name].Options.model_fields
        for key, value in (options or {}).items():
            if key != "false_positive_rate":
                assert fields[key].get_default(call_default_factory=True) == value, (name, key)
    for name, options in SHIPPED["simulate"]["options"].items():
        defaults = {p.name: p.default for p in inspect.signature(ATTACKS[name]).parameters.values()
                    if p.kind is p.KEYWORD_ONLY}
        assert {k: defaults[k] for k in options} == options, name


def test_replace_updates_nested_sections_key_by_key_and_replaces_mappings(config):
    pinned = config.replace("data", sha256={"source": "a" * 64})
    assert pinned.data.sha256.source == "a" * 64 and pinned.data.sha256.reference is None
    fewer = config.replace("filter", detectors={"robust_zscore": {}})
    assert list(fewer.filter.detectors) == ["robust_zscore"] and len(config.filter.detectors) > 1
    with pytest.raises(ConfigError, match=r"run options: simulate\.rate = 2"):
        config.replace("simulate", rate=2)


def test_run_options_are_by_section_and_only_what_was_given():
    assert configuration.run_options(None, None, None) == {}
    assert configuration.run_options("label_flip", 0.3, 1) == {"simulate": {"attack": "label_flip", "rate": 0.3},
                                                              "data": {"batch": 1}}


def test_numbers_read_as_yaml_1_2_does_so_1e_3_is_a_float_and_a_quoted_number_stays_text(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace("  learning_rate: 0.002\n", "  learning_rate: 2e-3\n", 1)
    path.write_text(text)
    assert configuration.load(path).train.learning_rate == 0.002
    path.write_text(text.replace("  epochs: 40\n", '  epochs: "40"\n', 1))
    with pytest.raises(ConfigError, match=r"train\.epochs = '40': Input should be a valid integer"):
        configuration.load(path)


def test_the_lock_timeout_is_read_even_from_a_params_file_that_does_not_validate(tmp_path):
    """Rollback takes the workspace lock before it restores params.yaml: a broken file must not stop it."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value("train.epochs", "1e9")))
    assert configuration.lock_timeout(path) == SHIPPED["data"]["lock_timeout_s"]
    path.write_text(yaml.safe_dump(with_value("data.lock_timeout_s", 5)))
    assert configuration.lock_timeout(path) == 5
    path.write_text("data: nonsense\n")
    assert configuration.lock_timeout(path) == SHIPPED["data"]["lock_timeout_s"]  # the shipped value
