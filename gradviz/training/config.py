"""A training run as data: `TrainConfig`, how it becomes the settings that cards, checkpoints, trials and recipes
record, and how long it runs (one meaning of "an epoch" for the sampler, the run length and the monitor)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gradviz.data.datasets import dataset_names, has_masks
from gradviz.nets.architecture import LAYER_STYLES, ZOO_WIDTH
from gradviz.nets.external import check_import_path
from gradviz.paths import safe_name
from gradviz.training.defenses import KEEP, MASKED, SETTINGS, LossSettings, defense_spec, unused_settings

LR_SCHEDULES = ("constant", "cosine")
# where, how and under which name a run goes: never part of its settings (the fast path computes the same values)
MACHINE_FIELDS = ("device", "data_dir", "name", "fast_penalty")


@dataclass
class TrainConfig:
    """Everything that determines a training run; stored in the model card."""

    dataset: str = "mnist"
    defense: str = "normal"
    lam: float = 0.0
    eps: float = 0.3
    temperature: float = 50.0
    penalty: str = "exact"
    epochs: float = 5.0
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    width: int = ZOO_WIDTH
    layers: str = "zoo"
    augment: bool = False
    name: str | None = None
    data_dir: str | None = None
    lr_schedule: str = "constant"
    lam_warmup: float = 0.0
    init_from: str | None = None
    train_subset: int | None = None
    holdout: int = 0
    fast_penalty: bool = False  # opt in to gradviz.training.fast_penalty (CPU, known layers only; else plain autograd)
    model: str | None = None  # None: our PaperCNN; "package.module:Callable" (fresh) or a registered model (its weights)
    model_kwargs: dict = field(default_factory=dict)  # keyword arguments for an import-path `model`
    annotations: str | None = None  # an annotation set (.npz, gradviz.data.annotations): a masked defense's masks

    def validate(self) -> None:
        if self.name is not None:
            safe_name(self.name, "model name")
        if self.model is not None:
            check_import_path(self.model) if ":" in self.model else safe_name(self.model, "model")
        if self.model_kwargs and (self.model is None or ":" not in self.model):
            raise ValueError("--model-kwargs goes with --model package.module:Callable")
        spec = defense_spec(self.defense)
        if spec.takes_lam and self.lam <= 0:
            raise ValueError(f"defense {self.defense!r} needs --lam > 0")
        if self.lam < 0 or self.eps < 0 or self.temperature <= 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("lam and eps must be ≥ 0; temperature, batch size and lr must be > 0")
        if (self.steps is None and self.epochs <= 0) or (self.steps is not None and self.steps < 1):
            raise ValueError("train for at least one step (--epochs > 0 or --steps ≥ 1)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.lr_schedule!r}; use {' or '.join(LR_SCHEDULES)}")
        if (self.train_subset is not None and self.train_subset < 1) or self.holdout < 0:
            raise ValueError("--train-subset must be ≥ 1 and --holdout ≥ 0")
        if self.train_subset is not None and self.holdout >= self.train_subset:
            raise ValueError(f"--holdout {self.holdout} leaves nothing of --train-subset {self.train_subset} to train on")
        if self.annotations is not None and not spec.masked:
            raise ValueError(f"--annotations go with a defense that uses them ({', '.join(sorted(MASKED))}), not "
                             f"{self.defense!r}")
        if spec.masked and self.annotations is None and not has_masks(self.dataset):
            raise ValueError(f"defense {self.defense!r} needs annotations (--annotations FILE) or a dataset with "
                             f"masks ({', '.join(d for d in dataset_names() if has_masks(d))}), not {self.dataset!r}")
        if spec.masked and self.augment:
            raise ValueError(f"defense {self.defense!r} cannot use --augment: its masks would not follow the shifts")
        if self.layers not in LAYER_STYLES:
            raise ValueError(f"unknown layer style {self.layers!r}; use {' or '.join(LAYER_STYLES)}")
        for name in spec.settings:
            setting = SETTINGS[name]
            value = getattr(self, name)
            if setting.choices and value not in setting.choices:
                raise ValueError(f"unknown {name} {value!r}; use {' or '.join(setting.choices)}")
            if not setting.choices and not setting.low <= value <= setting.high:
                raise ValueError(f"{setting.flag} must lie in [{setting.low:g}, {setting.high:g}], got {value:g}")

    def settings(self) -> dict:
        """The settings that determine the weights (every field but where the run goes): what a checkpoint and a
        trial record, and what a resumed run must match."""
        settings = asdict(self)
        for key in MACHINE_FIELDS:
            settings.pop(key)
        return settings

    def card_settings(self) -> dict:
        """The settings as a model card records them: a setting the defense ignores as its `when_unused` value."""
        settings = {k: v for k, v in asdict(self).items() if k != "data_dir"}
        for name in unused_settings(self.defense):
            if SETTINGS[name].when_unused is not KEEP:
                settings[name] = SETTINGS[name].when_unused
        return settings

    def default_name(self) -> str:
        parts = [self.dataset, *([model_label(self.model)] if self.model else []), self.defense.replace("+", "-")]
        if defense_spec(self.defense).takes_lam:
            parts.append(f"lam{self.lam:g}")
        return "-".join(parts)

    def loss_settings(self, teacher_phase: bool = False) -> LossSettings:
        spec = defense_spec(self.defense)
        return LossSettings(
            defense="normal" if teacher_phase else self.defense, lam=self.lam, eps=self.eps,
            temperature=self.temperature if "temperature" in spec.settings else 1.0, penalty=self.penalty,
        )


def model_label(model: str) -> str:
    """A short name for a run's `model` in default names: the callable's (resnet18) or the registered model's."""
    label = model.rpartition(":")[2].rpartition(".")[2].lower()
    return label if model.partition(":")[2] != "create_model" else "timm"


def comparable_settings(recorded: dict) -> dict:
    """What two records of a run must share to be the same run: a card, a checkpoint's or a recipe entry's settings
    (absent keys take today's defaults), without the settings its defense ignores, the dataset fixed by context,
    `init_from` by model name, and the length by epochs (a card's `steps` is the run's total, not the setting)."""
    defaults = TrainConfig().settings()
    settings = {k: recorded.get(k, v) for k, v in defaults.items() if k not in ("steps", "dataset")}
    for name in unused_settings(settings["defense"]):
        settings.pop(name)
    parent = settings["init_from"]
    settings["init_from"] = parent.get("name") if isinstance(parent, dict) else parent and Path(parent).stem
    return settings


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Steps of one epoch: full batches only (the sampler drops the short last batch), at least one."""
    return max(1, n_train // batch_size)


def total_steps(config: TrainConfig, n_train: int) -> int:
    """Steps of one phase: `steps` if set, else `epochs` epochs."""
    return config.steps if config.steps is not None else max(1, round(config.epochs * steps_per_epoch(
        n_train, config.batch_size)))


def run_steps(config: TrainConfig, n_train: int) -> int:
    """Steps of the whole run: every phase (a distillation's teacher, then its student) trains for the length."""
    return total_steps(config, n_train) * len(defense_spec(config.defense).phases)
