"""Typed configs of the internal-RL pipeline: one per stage, bundled in a :class:`RunConfig`.

Every value of a run lives here, is printed at start and saved to ``<out>/config.json``.
A :class:`RunConfig` is built from an env's preset (``smoke``, ``quick``, ``paper``) plus
optional ``stage.field=value`` overrides; bad values raise :class:`ConfigError` (a
``ValueError``) naming the field and what is allowed.

Adding a stage's config: subclass :class:`StageConfig` with ``stage = "<name>"``, add a
field of that type to :class:`RunConfig` and an entry to each env's presets in :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hier_envs.grid.expert import TIES

SUPPORTED_ENVS: tuple[str, ...] = ("HierGrid-v0", "HierAnt-v0")
"""Env IDs the pipeline runs on (always created from the registered ID)."""

PRESET_NAMES: tuple[str, ...] = ("smoke", "quick", "paper")

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
BACKBONES: tuple[str, ...] = ("transformer", "ssm")


class ConfigError(ValueError):
    """A config value that is not allowed; the message says which and why."""


@dataclass(frozen=True)
class StageConfig:
    """Base of the per-stage configs: type checks and range checks with clear errors."""

    stage: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = typing.get_args(hints[field.name]) or (hints[field.name],)
            if float in allowed and _is_int(value):
                object.__setattr__(self, field.name, float(value))  # JSON writes 1.0 as 1
            elif not any(_is_int(value) if t is int else isinstance(value, t) for t in allowed):
                names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
                raise ConfigError(f"{self.stage}.{field.name} must be {names}, got {value!r}.")

    def _check(self, condition: bool, name: str, requirement: str) -> None:
        if not condition:
            raise ConfigError(
                f"{self.stage}.{name} must be {requirement}, got {getattr(self, name)!r}."
            )

    def _positive(self, *names: str) -> None:
        for name in names:
            self._check(getattr(self, name) > 0, name, "> 0")

    def _non_negative(self, *names: str) -> None:
        for name in names:
            self._check(getattr(self, name) >= 0, name, ">= 0")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class DataConfig(StageConfig):
    """Expert trajectories on the pretraining tasks (stage ``data``)."""

    stage: ClassVar[str] = "data"
    train_episodes: int = 100_000
    heldout_episodes: int = 2_000
    num_envs: int = 4096  # envs stepped together in the batched env
    expert_eps: float = 0.0  # probability of a random safe action (paper: 0)
    expert_ties: str = "uniform"  # among equally short moves (paper: uniform; or "ordered")
    expert_post_episodes: int = 500  # the expert on the post-training task: the normaliser
    workers: int = 1  # processes playing groups of the envs (0: one per CPU core)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive("train_episodes", "heldout_episodes", "num_envs", "expert_post_episodes")
        self._non_negative("workers")
        self._check(0.0 <= self.expert_eps <= 1.0, "expert_eps", "a probability in [0, 1]")
        self._check(self.expert_ties in TIES, "expert_ties", f"one of {TIES}")


@dataclass(frozen=True)
class BaseModelConfig(StageConfig):
    """The causal base model and its training (stage ``base``).

    Loss per step: ``-log p(a_t | o_1:t) - lambda_obs * log p(o_t+1 | o_1:t)``. Batches
    are ``batch_size`` packed windows of ``window`` tokens (one token per observation).
    """

    stage: ClassVar[str] = "base"
    backbone: str = "transformer"  # or "ssm": Hawk's gated linear recurrence (the paper's ant)
    num_layers: int = 6
    width: int = 256
    num_heads: int = 4
    mlp_width: int = 512
    position_buckets: int = 32  # relative position bias buckets
    # Transformer only: in every stage after this one, the trained model attends to at most
    # this many tokens of its episode, itself included (None: its whole past). It trains on
    # whole pretraining episodes (99% shorter than 52 tokens); post-task episodes run to 100.
    attention_span: int | None = None
    lambda_obs: float = 0.01
    lr: float = 3e-4
    weight_decay: float = 0.03
    window: int = 256
    batch_size: int = 128
    steps: int = 256_000
    checkpoint_interval: int = 2_000
    eval_interval: int = 2_000
    rollout_episodes: int = 1_000  # own rollouts measuring the valid rate

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive(
            "num_layers",
            "width",
            "num_heads",
            "mlp_width",
            "position_buckets",
            "lr",
            "window",
            "batch_size",
            "steps",
            "checkpoint_interval",
            "eval_interval",
            "rollout_episodes",
        )
        self._non_negative("lambda_obs", "weight_decay")
        self._check(self.backbone in BACKBONES, "backbone", f"one of {BACKBONES}")
        if self.attention_span is not None:
            self._positive("attention_span")
            self._check(
                self.backbone == "transformer",
                "attention_span",
                "None with backbone 'ssm' (a recurrence has no attention: add "
                "--set base.attention_span=null)",
            )
        self._check(
            self.width % self.num_heads == 0, "width", f"divisible by num_heads={self.num_heads}"
        )


@dataclass(frozen=True)
class ProbeConfig(StageConfig):
    """Linear probes from every layer's residual stream to the current subgoal (stage ``probe``)."""

    stage: ClassVar[str] = "probe"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64  # packed windows
    steps: int = 2_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive("lr", "batch_size", "steps")
        self._non_negative("weight_decay")


@dataclass(frozen=True)
class ControllerConfig(StageConfig):
    """One low-rank residual controller per ground-truth subgoal (stage ``controllers``)."""

    stage: ClassVar[str] = "controllers"
    rank: int = 16
    controlled_layer: int | None = None  # None: L/2 of the base model
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 512
    steps: int = 3_200
    checkpoint_interval: int = 800
    eval_episodes: int = 1_000  # post-training episodes of the composed controllers
    onset_weight: float = (
        0.0  # extra loss weight on each subgoal's first onset_steps steps (paper: 0)
    )
    onset_steps: int = 4
    whiten: bool = False  # read the residual stream whitened: U = A B^T S (paper: no S)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive(
            "rank",
            "lr",
            "batch_size",
            "steps",
            "checkpoint_interval",
            "eval_episodes",
            "onset_steps",
        )
        self._non_negative("onset_weight")
        self._non_negative("weight_decay")
        if self.controlled_layer is not None:
            self._non_negative("controlled_layer")


@dataclass(frozen=True)
class MetacontrollerConfig(StageConfig):
    """The self-supervised metacontroller on the frozen base (stage ``metacontroller``).

    Loss: action NLL under the decoded controller ``+ alpha * KL(N(mu, Sigma) || N(0, I))``
    per step. Batches are packed windows of ``base.window`` tokens, as for the base model.
    The defaults are the paper's; ``hard_switch``, ``kl_per_switch`` and ``switch_cost``
    are the project's additions for small budgets (see the quick preset).
    """

    stage: ClassVar[str] = "metacontroller"
    latent_size: int = 8  # n_z
    history_size: int = 32  # n_h: GRU over the residual stream
    summary_size: int = 32  # n_s: non-causal summary of the whole episode
    hidden: int = 64  # encoder and switch MLPs
    decoder_hidden: int = 32  # hypernetwork
    rank: int = 16  # of the decoded residual controller
    alpha: float = 0.17  # KL weight (paper sweeps 0..1)
    kl_warmup: float = 0.0  # share of the steps over which alpha ramps up from 0
    kl_per_switch: bool = False  # weight each step's KL by beta (paper: False, plain KL)
    episode_summary: bool = True  # s is one vector per episode (paper); False: one per step
    hard_switch: bool = False  # beta is 0/1 forward, the sigmoid's gradient backward
    switch_noise: float = 0.0  # scale of logistic noise on the gate's logit in training
    binary_codes: bool = False  # proposals are sign(z~) going forward, z~'s gradient back
    switch_at: str = "gate"  # or "true_changes": a diagnostic, the switches are put at the
    # labelled subgoal changes and the gate is unused (internal RL refuses such a run)
    switch_gradient: str = "straight_through"  # or "two_point": a switch's gain at its own
    # step, or "segment": over the segment it opens; see metacontroller_training (hard_switch)
    encoder_reads: str = "all"  # "all" (paper: e_t, h_t-1, s); "future": a summary of e_t..e_T;
    # "future_mean": the mean of e over the next encoder_window steps
    encoder_lookahead: int = 0  # with "future*": the code at t reads from e_t+k on
    encoder_window: int = 0  # with "future_mean": steps averaged (e_t+k .. e_t+k+window-1)
    encoder_change: bool = False  # with "future_mean": also e's change over the window
    switch_cost: float = 0.0  # nats per switch added to the loss (paper: none)
    switch_cost_start: float = 0.0  # share of the steps before the switch cost applies
    switch_cost_ramp: float = 0.0  # share of the steps over which it then ramps up
    whiten: bool = False  # the decoded controller reads the whitened stream (as controllers.whiten)
    read_whitened: bool = False  # its own networks (encoder, history, gate) read the stream
    # whitened too (needs whiten), instead of layer-normalised (paper: layer norm)
    gate_reads_change: bool = False  # the gate also reads e_t - e_t-1 (paper: e_t, h_t-1, z_t-1)
    code_swap: float = 0.0  # NLL weight under other episodes' nearest switch codes (paper: 0)
    code_phase: float = 0.0  # share of the steps that train the codes alone, under switches
    # drawn at random (random_switch_rate); the rest train the gate alone on the frozen codes
    # (paper: one phase, everything together)
    random_switch_rate: float = 0.0  # probability of a switch at each step of the code phase
    lr: float = 1e-3
    batch_size: int = 64  # packed windows
    steps: int = 64_000
    checkpoint_interval: int = 1_000
    eval_batches: int = 8  # held-out batches for the switch metrics

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive(
            "latent_size",
            "history_size",
            "summary_size",
            "hidden",
            "decoder_hidden",
            "rank",
            "lr",
            "batch_size",
            "steps",
            "checkpoint_interval",
            "eval_batches",
        )
        self._non_negative(
            "alpha",
            "switch_cost",
            "switch_noise",
            "encoder_lookahead",
            "encoder_window",
            "code_swap",
        )
        self._check(self.encoder_reads in ENCODER_READS, "encoder_reads", f"one of {ENCODER_READS}")
        if self.encoder_reads == "all":
            self._check(
                not self.encoder_lookahead,
                "encoder_lookahead",
                '0 unless encoder_reads is "future" or "future_mean"',
            )
        else:
            self._check(
                not self.episode_summary, "encoder_reads", '"all" with episode_summary=True'
            )
        if self.encoder_reads == "future_mean":
            self._positive("encoder_window")
        else:
            self._check(
                not self.encoder_window, "encoder_window", '0 unless encoder_reads="future_mean"'
            )
            self._check(
                not self.encoder_change,
                "encoder_change",
                'False unless encoder_reads="future_mean"',
            )
        self._check(self.whiten or not self.read_whitened, "read_whitened", "False unless whiten")
        self._check(0 <= self.code_phase < 1, "code_phase", "in [0, 1)")
        if self.code_phase:
            self._check(
                0 < self.random_switch_rate <= 1, "random_switch_rate", "in (0, 1] with code_phase"
            )
            self._check(self.switch_at == "gate", "code_phase", '0 unless switch_at="gate"')
        else:
            self._check(not self.random_switch_rate, "random_switch_rate", "0 unless code_phase")
        self._check(self.switch_at in SWITCH_AT, "switch_at", f"one of {SWITCH_AT}")
        self._check(
            self.switch_gradient in SWITCH_GRADIENTS,
            "switch_gradient",
            f"one of {SWITCH_GRADIENTS}",
        )
        if self.switch_gradient != "straight_through":
            self._check(
                self.hard_switch, "switch_gradient", '"straight_through" unless hard_switch'
            )
        for share in ("kl_warmup", "switch_cost_start", "switch_cost_ramp"):
            self._check(0.0 <= getattr(self, share) <= 1.0, share, "a share in [0, 1]")


ENCODER_READS = ("all", "future", "future_mean")
SWITCH_AT = ("gate", "true_changes")
SWITCH_GRADIENTS = ("straight_through", "two_point", "segment")
RL_POLICIES = ("latent", "codebook")


@dataclass(frozen=True)
class CodebookConfig(StageConfig):
    """The metacontroller's switch codes distilled into ``clusters`` abstract actions with a
    refitted decoder (stage ``codebook``; the project's addition, docs/internal-rl-notes.md).
    ``clusters = 0``: no code book."""

    stage: ClassVar[str] = "codebook"
    clusters: int = 0  # k-means clusters of the switch codes; 0 skips the stage
    drop: float = 0.1  # share of each batch's segments, the worst fitted, left out of the loss
    rank: int | None = None  # of the refitted decoder; None: the metacontroller's
    fits: int = 1  # decoders fitted one after another from other seeds; their edits averaged
    steps: int = 800  # per fit
    batch_size: int = 32  # windows
    lr: float = 1e-3
    checkpoint_interval: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        self._non_negative("clusters")
        self._positive("fits", "steps", "batch_size", "lr", "checkpoint_interval")
        self._check(0 <= self.drop < 1, "drop", "in [0, 1)")
        if self.rank is not None:
            self._positive("rank")


@dataclass(frozen=True)
class RLConfig(StageConfig):
    """Internal RL: a policy over the latent code, acting at the switches (stage ``rl``).

    Critic-free PPO-clip; a trajectory's advantage is its return normalised over the
    batch. ``batch_size * iterations`` episodes in all; the baselines get as many.
    """

    stage: ClassVar[str] = "rl"
    policy: str = "latent"  # the paper's Gaussian over z, or "codebook": one of its clusters
    batch_size: int = 1_024  # episodes per iteration
    iterations: int = 1_000
    lr: float = 3e-5
    clip: float = 0.2
    epochs: int = 2  # PPO passes over each batch
    minibatch_size: int = 256  # episodes
    policy_size: int = 256  # recurrent policy width
    policy_reads_choice: bool = False  # the code-book policy also reads the action in force
    keep_bias: float | None = None  # the code-book policy's learnt logit bonus for the action
    # in force, from this start (None: no such term)
    eval_episodes: int = 1_000  # fresh held-out episodes of the final policy
    checkpoint_interval: int = 10  # iterations

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive(
            "batch_size",
            "iterations",
            "lr",
            "clip",
            "epochs",
            "minibatch_size",
            "policy_size",
            "eval_episodes",
            "checkpoint_interval",
        )
        self._check(self.policy in RL_POLICIES, "policy", f"one of {RL_POLICIES}")


@dataclass(frozen=True)
class GeneralisationConfig(StageConfig):
    """Do the codes name colours across layouts? (the paper's Fig. A4; stage ``generalisation``)

    Pairs ``(c, k)``: ``c`` the first colour of a pretraining task, ``k`` another colour.
    In fresh layouts on the task ``(c, k)``, once the base model reaches ``c`` a code of
    ``k`` (from a held-out episode, another layout) is held; ``episodes`` per pair, with
    and without the code.
    """

    stage: ClassVar[str] = "generalisation"
    pairs: int = 16  # drawn from all (c, k); or every pair when there are fewer
    episodes: int = 256  # per pair and arm

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive("pairs", "episodes")


@dataclass(frozen=True)
class BaselinesConfig(StageConfig):
    """The paper's baselines, each given the RL stage's number of episodes (stage ``baselines``)."""

    stage: ClassVar[str] = "baselines"
    raw_action_rl: bool = True  # PPO on raw actions, fine-tuning the base model
    raw_action_lr: float = 3e-5
    forced_switch: bool = True  # metacontroller trained and used with beta = 1
    cotrained: bool = True  # metacontroller and base trained together from scratch
    cotrain_steps: int = 64_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive("raw_action_lr", "cotrain_steps")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run: the env, the preset it started from, and each stage's config.

    ``device`` is saved with the run but is not part of its identity: a run started on
    the CPU may be resumed on a GPU.
    """

    env_id: str
    preset: str
    seed: int
    device: str
    data: DataConfig
    base: BaseModelConfig
    probe: ProbeConfig
    controllers: ControllerConfig
    metacontroller: MetacontrollerConfig
    generalisation: GeneralisationConfig
    codebook: CodebookConfig
    rl: RLConfig
    baselines: BaselinesConfig

    def __post_init__(self) -> None:
        for name in ("env_id", "preset", "device"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}.")
        _check_env_and_preset(self.env_id, self.preset)
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}.")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"Unknown device {self.device!r}: use auto, cpu, cuda or cuda:N.")
        for name, config_type in stage_config_types().items():
            if not isinstance(getattr(self, name), config_type):
                raise ConfigError(
                    f"{name} must be a {config_type.__name__}, got {getattr(self, name)!r}."
                )
        layer = self.controllers.controlled_layer
        if layer is not None and layer > self.base.num_layers:
            raise ConfigError(
                f"controllers.controlled_layer={layer} is deeper than the base model "
                f"(base.num_layers={self.base.num_layers})."
            )
        in_force_options = {
            "policy_reads_choice": self.rl.policy_reads_choice,
            "keep_bias": self.rl.keep_bias is not None,  # 0.0 is a start, not "off"
        }
        for option, used in in_force_options.items():
            if used and self.rl.policy != "codebook":
                raise ConfigError(
                    f"rl.{option} needs rl.policy=codebook (the Gaussian policy over codes "
                    "has no action in force to read)."
                )
        if self.rl.policy == "codebook" and not self.codebook.clusters:
            raise ConfigError(
                "rl.policy=codebook needs a code book: set codebook.clusters > 0 "
                "(e.g. --set codebook.clusters=4)."
            )

    @property
    def controlled_layer(self) -> int:
        """The residual stream the controllers edit: ``controllers.controlled_layer`` or L/2."""
        layer = self.controllers.controlled_layer
        return self.base.num_layers // 2 if layer is None else layer

    @classmethod
    def from_preset(
        cls,
        env_id: str,
        preset: str = "quick",
        seed: int = 0,
        device: str = "auto",
        overrides: Sequence[str] = (),
    ) -> RunConfig:
        """The env's preset with ``stage.field=value`` overrides (values read as JSON), a
        stage's all at once: values valid only together are accepted in any order."""
        _check_env_and_preset(env_id, preset)
        stages = dict(PRESETS[env_id][preset])
        changes: dict[str, dict[str, Any]] = {}
        for override in overrides:
            stage, field, value = _parse_override(override)
            changes.setdefault(stage, {})[field] = value
        for stage, values in changes.items():
            stages[stage] = dataclasses.replace(stages[stage], **values)
        return cls(env_id=env_id, preset=preset, seed=seed, device=device, **stages)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys and a missing env, preset, seed or
        device raise :class:`ConfigError`. A stage or stage field missing from ``values``
        (added after the config was saved) takes its defaults: a new option's default is
        the behaviour from before it, so an older run reads as the run it was."""
        stage_types = stage_config_types()
        _check_keys("run config", values, [f.name for f in dataclasses.fields(cls)], stage_types)
        values = {name: {} for name in stage_types} | values
        stages = {}
        for name, config_type in stage_types.items():
            if not isinstance(values[name], dict):
                raise ConfigError(f"{name} must be a JSON object, got {values[name]!r}.")
            fields = [f.name for f in dataclasses.fields(config_type)]
            _check_keys(name, values[name], fields, optional=fields)
            stages[name] = config_type(**values[name])
        scalars = {k: v for k, v in values.items() if k not in stage_types}
        return cls(**scalars, **stages)

    def identity(self) -> dict[str, Any]:
        """The values that make two runs the same run (all but ``device``)."""
        values = self.to_dict()
        del values["device"]
        return values


def stage_config_types() -> dict[str, type[StageConfig]]:
    """``RunConfig`` field name -> stage config class, in pipeline order."""
    hints = typing.get_type_hints(RunConfig)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(RunConfig)
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], StageConfig)
    }


def _check_env_and_preset(env_id: str, preset: str) -> None:
    if env_id not in SUPPORTED_ENVS:
        raise ConfigError(
            f"Unknown env {env_id!r}: agents.internal_rl supports {', '.join(SUPPORTED_ENVS)}."
        )
    if preset not in PRESET_NAMES:
        raise ConfigError(f"Unknown preset {preset!r}: choose one of {', '.join(PRESET_NAMES)}.")


def _check_keys(
    what: str, values: dict[str, Any], expected: Iterable[str], optional: Iterable[str] = ()
) -> None:
    expected, optional = list(expected), set(optional)
    unknown = sorted(set(values) - set(expected))
    missing = [k for k in expected if k not in values and k not in optional]
    problems = [
        f"{name} keys {keys}" for name, keys in (("unknown", unknown), ("missing", missing)) if keys
    ]
    if problems:
        raise ConfigError(f"{what}: {', '.join(problems)} (expected {expected}).")


def _parse_override(override: str) -> tuple[str, str, Any]:
    """``"base.steps=500"`` -> ``("base", "steps", 500)``; the value is JSON, else a string."""
    key, sep, text = override.partition("=")
    stage, dot, field = key.strip().partition(".")
    stage_types = stage_config_types()
    if not sep or not dot:
        raise ConfigError(
            f"Override {override!r} must look like stage.field=value, e.g. base.steps=500."
        )
    if stage not in stage_types:
        raise ConfigError(
            f"Override {override!r}: unknown stage {stage!r}; stages: {', '.join(stage_types)}."
        )
    fields = [f.name for f in dataclasses.fields(stage_types[stage])]
    if field not in fields:
        raise ConfigError(
            f"Override {override!r}: {stage} has no field {field!r}; fields: {', '.join(fields)}."
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return stage, field, value


GRID_PRESETS: dict[str, dict[str, StageConfig]] = {
    # Tiny: the whole pipeline in well under a minute on a CPU; used by the tests.
    "smoke": {
        "data": DataConfig(
            train_episodes=256, heldout_episodes=64, num_envs=64, expert_post_episodes=64
        ),
        "base": BaseModelConfig(
            num_layers=2,
            width=32,
            num_heads=2,
            mlp_width=64,
            position_buckets=8,
            lr=1e-3,
            window=128,
            attention_span=32,  # as the quick preset's, so that the smoke run exercises it
            batch_size=8,
            steps=20,
            checkpoint_interval=10,
            eval_interval=10,
            rollout_episodes=32,
        ),
        "probe": ProbeConfig(lr=1e-2, batch_size=8, steps=20),
        "controllers": ControllerConfig(
            rank=4, batch_size=8, steps=20, checkpoint_interval=10, eval_episodes=32
        ),
        "metacontroller": MetacontrollerConfig(
            latent_size=4,
            history_size=8,
            summary_size=8,
            hidden=16,
            decoder_hidden=8,
            rank=4,
            batch_size=8,
            steps=20,
            checkpoint_interval=10,
            eval_batches=2,
        ),
        "generalisation": GeneralisationConfig(pairs=2, episodes=4),
        "codebook": CodebookConfig(clusters=4, steps=10, batch_size=8, checkpoint_interval=5),
        "rl": RLConfig(
            policy="codebook",
            batch_size=32,
            iterations=4,
            lr=1e-3,
            minibatch_size=16,
            policy_size=16,
            eval_episodes=32,
            checkpoint_interval=2,
        ),
        "baselines": BaselinesConfig(raw_action_lr=1e-4, cotrain_steps=20),
    },
    # The 2-core CPU budget (about 45 min for the whole pipeline). The base model reads
    # navigation features (features.py) and trains on packed windows of 128 tokens. The
    # expert breaks ties between shortest moves in a fixed order: its demonstrations carry
    # no coin flips for the metacontroller to explain, and the base model learns them
    # faster (1500 steps: action accuracy 0.94, valid rollouts 0.99; uniform ties: 0.84, 0.96).
    "quick": {
        "data": DataConfig(
            train_episodes=100_000, heldout_episodes=2_000, num_envs=4096, expert_ties="ordered"
        ),
        "base": BaseModelConfig(
            num_layers=4,
            width=128,
            num_heads=4,
            mlp_width=512,
            window=128,
            # In every later stage the trained model attends to its last 32 tokens: post-task
            # episodes outgrow the pretraining ones it learnt from, and the code book's
            # ceiling rises from 0.54 to 0.74 (docs/internal-rl-notes.md, "The attention span").
            attention_span=32,
            batch_size=64,
            steps=1_500,
            checkpoint_interval=250,
            eval_interval=250,
            rollout_episodes=500,
        ),
        "probe": ProbeConfig(batch_size=32, steps=500),
        # Weighting each subgoal's first steps (where a controller must turn the model
        # towards a new colour) raised composed success from 0.33 to 0.41 (greedy).
        # The edits go in after layer 1 of 4, not at L/2 (the paper's, of 6 layers): on
        # this base the supervised controllers compose to 0.43 there, 0.19 at L/2 and 0.03
        # at layer 3, and the code book's ceiling rises from 0.08 to 0.40
        # (docs/internal-rl-notes.md, "The controlled layer"). Every stage that edits the
        # stream reads this setting.
        # Rank 64 instead of the paper's 16 (of a width of 128 here): 0.59 sampled, 0.62
        # greedy at layer 1 (rank 16: 0.43, 0.49).
        "controllers": ControllerConfig(
            controlled_layer=1,
            rank=64,
            batch_size=32,
            steps=800,
            checkpoint_interval=200,
            eval_episodes=500,
            onset_weight=4.0,
        ),
        # Measured on this base (quick data), seed 0. The paper's recipe (one summary vector
        # per episode, soft gate, plain KL) collapses to the prior here at every alpha tried
        # (0.05-0.25; also 700 steps on a GPU). With per-step summaries the codes become
        # informative but carry the expert's per-step tie-breaks: a switch at every step
        # (alpha 0.1-0.25, F1 0.33). A hard (straight-through) gate, the KL paid only at
        # switches and a price of 0.1 nats per switch, phased in after the codes form, give
        # sparse, binary switching that starts at the true subgoal changes (F1 0.31-0.44,
        # 7-8 switches per episode); 0.13-0.15 nats closes the gate for good, 0.07 switches
        # more (F1 0.40). With the ordered-ties expert, an encoder that reads the past puts
        # the whole task into the first code (1.06 switches per episode, F1 0.00); one that
        # reads only the summary of the steps ahead switches 3.1 times (F1 0.63), with
        # bursts of per-step nudges; reading that summary 3 steps later (steps t+3..T: the
        # code must say where the agent goes, not its next move) makes the switches precise:
        # at 0.1 nats a switch F1 0.26 (precision 1.00, 0.3 switches per episode), at 0.05
        # nats F1 0.79 (precision 0.87, recall 0.73, 1.9 switches per episode). A smaller
        # KL weight gives codes that name subgoals and sharper switching: alpha 0.03, F1
        # 0.89-0.94 and a code of the same subgoal from another episode nearly as good as
        # the episode's own (generalisation.transfer_nll_*: 0.053 and 0.020; alpha 0.1:
        # 0.110 and 0.049, worse than no code, 0.101); alpha 0.01, F1 0.89; alpha 0 (the
        # paper's sweep starts there; the switch price alone keeps the gate sparse), F1
        # 0.996-0.999 (one or two torch threads), 2.0 switches per episode against 2 true
        # changes, and the most steering at unseen transitions (docs/internal-rl-notes.md,
        # "Where the steering is lost"). kl_warmup and kl_per_switch act only when
        # alpha > 0.
        "metacontroller": MetacontrollerConfig(
            encoder_reads="future",
            encoder_lookahead=3,
            episode_summary=False,
            hard_switch=True,
            kl_per_switch=True,
            alpha=0.0,
            kl_warmup=0.5,
            switch_cost=0.05,
            switch_cost_start=0.4,
            switch_cost_ramp=0.4,
            lr=2e-3,
            batch_size=32,
            steps=600,
            checkpoint_interval=200,
            eval_batches=8,
        ),
        "generalisation": GeneralisationConfig(pairs=16, episodes=64),
        # The metacontroller's own decoder steers only at transitions the base model has
        # seen (docs/internal-rl-notes.md, "Where the steering is lost"); the code book's
        # refitted one does.
        # A full-rank decoder (the metacontroller's is of rank 16) raises the code book's
        # ceiling on the post task, oracle choices at the switches (codebook_oracle), from
        # 0.40 (rank 16) and 0.47 (rank 64) to 0.54; a metacontroller of rank 64 switched
        # less reliably (recall 0.95) and did worse. Three fits averaged: ceilings 0.652,
        # 0.735, 0.576 for seeds 0, 1, 2, against 0.584, 0.689, 0.577 for the first fit
        # alone and 0.601 for one fit on average (docs/internal-rl-notes.md, "Averaging fits").
        "codebook": CodebookConfig(clusters=4, rank=128, fits=3),
        # Over the full-rank code book at layer 1 the first success came after 11k episodes
        # and success passed 0.5 per batch at 22k (seed 0): 61,440 episodes leave a margin.
        "rl": RLConfig(
            policy="codebook",
            batch_size=512,
            iterations=120,
            lr=1e-3,
            minibatch_size=256,
            policy_size=64,
            eval_episodes=1_000,
            checkpoint_interval=10,
        ),
        "baselines": BaselinesConfig(raw_action_lr=1e-4, cotrain_steps=500),
    },
    # The paper's hyperparameters (arXiv 2512.20605), meant for a GPU. The paper's batch of
    # 1024 episodes becomes 128 packed windows of 256 tokens (~1000 episodes of ~33 tokens).
    # Dataset size and probe settings are not in the paper: the project's choice.
    "paper": {
        "data": DataConfig(train_episodes=1_000_000, heldout_episodes=10_000, num_envs=8192),
        "base": BaseModelConfig(),
        "probe": ProbeConfig(),
        "controllers": ControllerConfig(),
        "metacontroller": MetacontrollerConfig(),
        "generalisation": GeneralisationConfig(),
        "codebook": CodebookConfig(),
        "rl": RLConfig(),
        "baselines": BaselinesConfig(),
    },
}
"""HierGrid-v0: preset name -> stage name -> that stage's config."""

# HierAnt-v0 episodes last up to 500 steps (501 tokens), so windows are 512 tokens; the
# base model is the paper's recurrent one (Hawk) and the controllers are full linear maps
# (rank = width), as in the paper. Expert data is the walker's Gaussian mean.
ANT_PRESETS: dict[str, dict[str, StageConfig]] = {
    # Tiny: every stage on a few episodes; used by the tests.
    "smoke": {
        "data": DataConfig(
            train_episodes=8, heldout_episodes=4, num_envs=4, expert_post_episodes=4
        ),
        "base": BaseModelConfig(
            backbone="ssm",
            num_layers=2,
            width=32,
            num_heads=2,
            mlp_width=64,
            lambda_obs=10.0,
            lr=1e-3,
            window=512,
            batch_size=2,
            steps=10,
            checkpoint_interval=5,
            eval_interval=5,
            rollout_episodes=4,
        ),
        "probe": ProbeConfig(lr=1e-2, batch_size=2, steps=10),
        "controllers": ControllerConfig(
            rank=32,
            controlled_layer=0,
            batch_size=2,
            steps=10,
            checkpoint_interval=5,
            eval_episodes=4,
            whiten=True,
        ),
        "metacontroller": MetacontrollerConfig(
            latent_size=4,
            history_size=8,
            summary_size=8,
            hidden=16,
            decoder_hidden=8,
            rank=32,
            whiten=True,
            batch_size=2,
            steps=10,
            checkpoint_interval=5,
            eval_batches=2,
        ),
        "generalisation": GeneralisationConfig(pairs=2, episodes=2),
        "codebook": CodebookConfig(clusters=2, steps=4, batch_size=2, checkpoint_interval=2),
        "rl": RLConfig(
            policy="codebook",
            batch_size=4,
            iterations=2,
            lr=1e-3,
            minibatch_size=4,
            policy_size=16,
            eval_episodes=4,
            checkpoint_interval=1,
        ),
        "baselines": BaselinesConfig(raw_action_lr=1e-4, cotrain_steps=10),
    },
    # The 2-core CPU budget: a small recurrent base model on 2,000 expert episodes, and
    # short runs of every later stage (ant rollouts cost about a second per 1,500 steps).
    "quick": {
        "data": DataConfig(
            train_episodes=10_000,  # 3 min with two workers; the codes need them
            heldout_episodes=100,
            num_envs=64,
            expert_post_episodes=100,
            workers=0,
        ),
        "base": BaseModelConfig(
            backbone="ssm",
            num_layers=4,
            width=128,
            mlp_width=256,
            lambda_obs=10.0,
            window=512,
            batch_size=8,
            steps=1_500,
            checkpoint_interval=250,
            eval_interval=250,
            rollout_episodes=64,
        ),
        "probe": ProbeConfig(batch_size=8, steps=500),
        # The controllers edit the encoder's output (layer 0), read whitened: there, "go to
        # colour k" is an exact linear map of the stream (the navigation features of colour
        # k copied over the others'; R^2 1.000, against 0.14 at L/2), and whitening lets
        # 200 steps find it (docs/internal-rl-ant.md, "The ant's controllers").
        "controllers": ControllerConfig(
            rank=128,
            controlled_layer=0,
            batch_size=8,
            steps=200,
            checkpoint_interval=50,
            eval_episodes=32,
            whiten=True,
        ),
        # Two phases (docs/internal-rl-ant.md, "Codes from random switches, then the gate"):
        # 1,200 steps of codes read from the 30 steps ahead and held between random switches
        # (they come to name the colour), then 400 of the gate alone on those frozen codes,
        # reading the stream's change, each switch scored by its own step's gain at 0.5 nats.
        "metacontroller": MetacontrollerConfig(
            rank=128,
            alpha=0.0,
            kl_per_switch=True,
            episode_summary=False,
            hard_switch=True,
            switch_gradient="two_point",
            encoder_reads="future_mean",
            encoder_lookahead=5,
            encoder_window=30,
            encoder_change=True,
            switch_cost=0.5,
            switch_cost_start=0.85,
            switch_cost_ramp=0.025,
            whiten=True,
            read_whitened=True,
            gate_reads_change=True,
            code_phase=0.75,
            random_switch_rate=0.033,
            batch_size=8,
            steps=1_600,
            checkpoint_interval=100,
        ),
        # Few of the base model's own episodes reach the pair's first colour (56 of 512
        # here), so fewer episodes than this leave the reach rates to chance.
        "generalisation": GeneralisationConfig(pairs=8, episodes=64),
        # Four abstract actions, as on the grid: they reach their colour in 0.60 of the
        # probe's episodes (the metacontroller's own codes: 0.46), and chosen by the true
        # subgoal at each switch they solve the post task 0.14 of the time (codebook_oracle).
        "codebook": CodebookConfig(
            clusters=4, rank=128, batch_size=8, steps=400, checkpoint_interval=100
        ),
        # Successes come rarely (about 1 episode in 400), so each batch's step on them is
        # large: the whole batch at once, four epochs, lr 3e-3 (lr 1e-3 and two epochs of
        # 16: 4 successes in 6,400 episodes, colours in order 0.26 -> 0.35). 6,400 episodes
        # take the colours reached in order from 0.26 to about 0.47, 12 successes on the
        # way (docs/internal-rl-ant.md, "Internal RL over a code book").
        "rl": RLConfig(
            policy="codebook",
            batch_size=64,
            iterations=100,
            lr=3e-3,
            epochs=4,
            minibatch_size=64,  # raw-action RL: a PPO step on 64 ant episodes takes ~3.3 GB
            policy_size=64,
            eval_episodes=256,
            checkpoint_interval=10,
        ),
        # The forced-switch and co-trained baselines add about 45 min at 6,400 episodes:
        # --set baselines.forced_switch=true --set baselines.cotrained=true.
        "baselines": BaselinesConfig(
            raw_action_lr=1e-4, forced_switch=False, cotrained=False, cotrain_steps=100
        ),
    },
    # The paper's ant hyperparameters (arXiv 2512.20605): Hawk base model, 8 layers of
    # width 256, lambda 10, 204,800 steps; its batch of 512 episodes (~170 tokens each)
    # becomes 192 windows of 512 tokens. Metacontroller 32k steps, batch 128, lr 3e-4;
    # internal RL 200 batches of 256 episodes (51,200), lr 3e-5. Dataset size: the project's.
    "paper": {
        "data": DataConfig(train_episodes=100_000, heldout_episodes=2_000, num_envs=256, workers=0),
        "base": BaseModelConfig(
            backbone="ssm",
            num_layers=8,
            lambda_obs=10.0,
            window=512,
            batch_size=192,
            steps=204_800,
            rollout_episodes=256,
        ),
        "probe": ProbeConfig(),
        "controllers": ControllerConfig(rank=256, batch_size=192),
        "metacontroller": MetacontrollerConfig(rank=256, lr=3e-4, batch_size=128, steps=32_000),
        "generalisation": GeneralisationConfig(),
        "codebook": CodebookConfig(),
        "rl": RLConfig(batch_size=256, iterations=200),
        "baselines": BaselinesConfig(),
    },
}
"""HierAnt-v0: preset name -> stage name -> that stage's config."""

PRESETS: dict[str, dict[str, dict[str, StageConfig]]] = {
    "HierGrid-v0": GRID_PRESETS,
    "HierAnt-v0": ANT_PRESETS,
}
"""Env ID -> its presets."""
