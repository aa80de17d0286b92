"""params.yaml, parsed once per run into frozen, validated sections (pydantic v2).

Every key is required here, so params.yaml is the one place a setting's value lives; detector options are the
exception (each detector's `Options` gives its defaults, which match the shipped params.yaml, see
tests/test_config.py). Unknown keys are refused; a bad value is one line naming the key, the value and what is
allowed (ConfigError, exit status 2), before any stage runs."""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poisongate.errors import ConfigError

Rate = Annotated[float, Field(gt=0, lt=1)]  # a probability that must be neither 0 nor 1
Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    """A params.yaml section: frozen, unknown keys refused, no silent type coercion ("1e9" is not a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Split(Section):
    seed: int
    reference_fraction: Rate
    holdout_fraction: Rate
    batches: Count

    @model_validator(mode="after")
    def _leaves_rows(self) -> Split:
        if self.reference_fraction + self.holdout_fraction >= 1:
            raise ValueError("reference_fraction + holdout_fraction must be < 1 (the rest are the incoming batches)")
        return self


class Pins(Section):
    source: str | None
    reference: str | None
    holdout: str | None


class DataConfig(Section):
    source: str  # "digits" (the embedded default) or the path of the incoming batch
    reference: str | None
    holdout: str | None
    label_column: str
    id_column: str | None
    feature_columns: list[str] | None
    split: Split
    batch: Annotated[int, Field(ge=0)] | None  # None: the next batch not yet in the training set
    max_bytes: Count
    max_rows: Count
    min_rows: Count
    follow_symlinks: bool
    sha256: Pins
    lock_timeout_s: NonNegative

    @model_validator(mode="after")
    def _sources_complete(self) -> DataConfig:
        if self.source == "digits" and self.batch is not None and self.batch >= self.split.batches:
            raise ValueError(f"batch {self.batch} but split.batches is {self.split.batches}: "
                             f"use 0..{self.split.batches - 1}")
        if self.source != "digits" and not (self.reference and self.holdout):
            raise ValueError("a source of your own needs its trusted reference and holdout files too")
        return self


class SimulateConfig(Section):
    attack: str
    rate: Share
    seed: int
    options: dict[str, dict[str, Any]]

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each attack's options name its keyword-only parameters, with values of their defaults' types."""
        from poisongate.attacks import ATTACKS

        for name, values in options.items():
            if name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
            defaults = {p.name: p.default for p in inspect.signature(ATTACKS[name]).parameters.values()
                        if p.kind is p.KEYWORD_ONLY}
            for key, value in (values or {}).items():
                if key not in defaults:
                    raise ValueError(f"{name}.{key}: not an option of {name}; its options: {', '.join(defaults)}")
                kind = type(defaults[key])
                if defaults[key] is not None and not isinstance(value, kind if kind is not float else (int, float)):
                    raise ValueError(f"{name}.{key} = {value!r}: expected {kind.__name__}")
        return options

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, attack: str) -> str:
        from poisongate.attacks import ATTACKS

        if attack != "none" and attack not in ATTACKS:
            raise ValueError(f"must be none or one of {', '.join(sorted(ATTACKS))}")
        return attack


class ValidateConfig(Section):
    false_refusal_rate: Rate  # family-wise, split over the batch-level expectations (Bonferroni)
    range_margin: NonNegative
    range_mostly: Annotated[float, Field(gt=0, le=1)] | None  # None: from the reference, at the batch's size
    mean: bool
    stdev: bool
    quantiles: bool
    class_mix: bool
    max_duplicate_share: Share | None


class FilterConfig(Section):
    seed: int
    false_positive_rate: Rate
    fdr: Rate
    calibration_folds: Annotated[int, Field(ge=2)]
    max_quarantine_share: Annotated[float, Field(gt=0, le=1)]
    chunk_rows: Count
    dask_address: str | None
    detectors: dict[str, Any]  # name -> that detector's validated Options

    @field_validator("detectors", mode="before")
    @classmethod
    def _detector_options(cls, value: Any) -> dict[str, Any]:
        from poisongate.detectors import registry

        if not isinstance(value, dict) or not value:
            raise ValueError("must map at least one detector name to its options")
        out = {}
        for name, options in value.items():
            if name not in registry.DETECTORS:
                raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(registry.DETECTORS))}")
            try:
                out[name] = registry.DETECTORS[name].Options.model_validate(options or {})
            except ValidationError as e:
                raise ValueError(f"{name}: {first_error(e)}") from None
        return out


class Adversarial(Section):
    method: Literal["none", "fgsm", "pgd"]
    epsilon: NonNegative
    pgd_steps: Count
    pgd_step_size: NonNegative


class DPSGD(Section):
    enabled: bool
    clip_norm: Positive
    noise_multiplier: NonNegative
    delta: Rate


class Recipe(Section):
    """What a model is trained with: the candidate's `train` section, or a detector's own smaller recipe."""

    seed: int
    model: Literal["mlp", "cnn"]
    hidden: list[Count]  # [] is a linear model (softmax regression)
    epochs: Count
    batch_size: Count
    learning_rate: Positive
    weight_decay: NonNegative
    cnn_channels: Annotated[list[Count], Field(min_length=1)]
    clip_grad_norm: NonNegative  # 0: off
    trim_fraction: Annotated[float, Field(ge=0, lt=1)]
    adversarial: Adversarial
    dp_sgd: DPSGD


class Monitor(Section):
    spike_window: Count
    spike_zscore: Positive
    spike_min_scale: Positive


class TrainConfig(Recipe):
    monitor: Monitor
    checkpoint_every: Count


class CampaignConfig(Section):
    alpha: Rate  # chance a clean night is refused by the cross-night checks, split over them (Bonferroni)
    checks: Annotated[list[Literal["class_mix", "detector_share", "duplicates", "drift"]], Field(min_length=0)]


class CrossvalConfig(Section):
    folds: Annotated[int, Field(ge=2)]


class PromoteConfig(Section):
    alpha: Rate  # chance a clean candidate is refused by the statistical checks, split over them (Bonferroni)
    min_accuracy: Share | None  # absolute floors: off (null) by default, the data's own floor is the baseline
    min_class_recall: Share | None
    max_accuracy_drop: Share | None  # practical margin vs the champion, beyond any test
    class_recall_margin: Share = 0.0  # per-class tests refuse only a recall drop significantly beyond this
    max_loss_spikes: Annotated[int, Field(ge=0)] | None  # null: loss spikes are reported, not refused


class AuditConfig(Section):
    """After training (poisongate/audit.py, poisongate/output_monitor.py). Defaults: a workspace of an earlier
    version has no section."""

    enabled: bool = True
    false_alarm_rate: Rate = 0.01  # per accepted row of tonight: chance a clean row is flagged by its influence
    retrain: bool = True  # flagged rows: quarantined after the fact and the candidate retrained once without them
    chunk_rows: Count = 4096
    pull_alpha: Rate = 0.001  # chance a clean candidate is refused for a target-class pull (Bonferroni)
    tsne_rows: Count = 2000  # at most this many rows in the t-SNE view (a seeded sample beyond)


class Targets(Section):
    max_accuracy_drop: dict[float, Share]
    max_backdoor_asr: Share
    max_backdoor_clean_cost: Share


class RedteamConfig(Section):
    attacks: Literal["all"] | Annotated[list[str], Field(min_length=1)]
    rates: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=1)]
    epochs: Count | None  # null: train.epochs
    workers: Count
    out: str
    targets: Targets

    @field_validator("attacks")
    @classmethod
    def _known_attacks(cls, attacks: Any) -> Any:
        from poisongate.attacks import ATTACKS

        unknown = [] if attacks == "all" else [a for a in attacks if a not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack {unknown[0]!r}; choose from {', '.join(sorted(ATTACKS))}")
        return attacks


class AlertsConfig(Section):
    webhook: str | None = None  # a URL: a run that does not promote POSTs {"subject", "body"} as JSON to it
    block: str | None = None  # or a saved Prefect notification block, "<type slug>/<name>" (e.g. slack-webhook/ops)

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("block")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value and "/" not in value:
            raise ValueError("give it as <block type slug>/<block name>, e.g. slack-webhook/ops")
        return value


class Config(Section):
    data: DataConfig
    simulate: SimulateConfig
    validation: ValidateConfig = Field(alias="validate")  # the name `validate` would shadow BaseModel.validate
    filter: FilterConfig
    campaign: CampaignConfig
    train: TrainConfig
    crossval: CrossvalConfig
    promote: PromoteConfig
    audit: AuditConfig = AuditConfig()
    redteam: RedteamConfig
    alerts: AlertsConfig = AlertsConfig()  # a workspace of an earlier version has no section: no alerts

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed (run options such as `--simulate`; a nested section such
        as data.sha256 is updated key by key, a mapping such as filter.detectors replaced), validated again."""
        current, model = (self.model_dump(by_alias=True),
                          getattr(self, "validation" if section == "validate" else section))
        for key, value in values.items():
            nested = isinstance(getattr(model, key, None), Section) and isinstance(value, dict)
            current[section][key] = {**current[section][key], **value} if nested else value
        return parse(current, "run options", fix="fix the option")


def run_options(attack: str | None, rate: float | None, batch: int | None) -> dict[str, dict[str, Any]]:
    """A run's own settings over params.yaml, by section (`run --simulate ATTACK --rate R --batch N`): recorded
    in the run report, never written into the user's params.yaml."""
    options: dict[str, dict[str, Any]] = {}
    if attack is not None or rate is not None:
        options["simulate"] = {k: v for k, v in (("attack", attack), ("rate", rate)) if v is not None}
    if batch is not None:
        options["data"] = {"batch": batch}
    return options


def with_options(config: Config, options: dict[str, dict[str, Any]]) -> Config:
    for section, values in options.items():
        config = config.replace(section, **values)
    return config


def first_error(error: ValidationError) -> str:
    """Pydantic's first complaint as `key = value: what is allowed`."""
    e = error.errors()[0]
    key = ".".join(str(part) for part in e["loc"])
    shown = repr(e["input"]) if not isinstance(e["input"], dict) else "{...}"
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    message = e["msg"].removeprefix("Value error, ")
    return f"{key} = {shown}: {message}" if key else message


def parse(raw: Any, origin: str | Path, fix: str = "fix it in params.yaml") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections; fix the file")
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{origin}: {first_error(e)}; {fix}") from None


class _Loader(yaml.SafeLoader):
    """YAML as people write numbers: PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string; YAML 1.2 and
    every other tool read it as a float."""


EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))


def loads(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read(path: Path) -> Any:
    """params.yaml as YAML, before any validation."""
    try:
        return loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run `poisongate init {path.parent}` to create a workspace") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from None


def load(path: str | Path) -> Config:
    path = Path(path)
    return parse(read(path), path)


def lock_timeout(path: str | Path) -> float:
    """data.lock_timeout_s for commands that must work while the rest of params.yaml is broken or from another
    version (a rollback restores params.yaml itself): the shipped value where the file does not give one."""
    raw = read(Path(path))
    data = raw.get("data") if isinstance(raw, dict) else None
    value = data.get("lock_timeout_s") if isinstance(data, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 600.0
