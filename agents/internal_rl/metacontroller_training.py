"""Stage ``metacontroller``: train it on the expert data with the base model frozen, then
measure its switching against the true subgoal changes (never seen in training).

Also used by the baselines: ``forced`` trains it with ``beta = 1`` at every step, and
``cotrain`` trains a fresh base model together with it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.base_training import action_score, score_name, tensors
from agents.internal_rl.config import MetacontrollerConfig, RunConfig
from agents.internal_rl.controllers import stream_whitening
from agents.internal_rl.data import IGNORE, Batch, DataPosition, EpisodeDataset, load_split
from agents.internal_rl.metacontroller import (
    SWITCH_THRESHOLD,
    EpisodeLayout,
    MetaController,
    freeze_codes,
    given_switches,
    kl_to_prior,
    nearest_switch_codes,
    random_switches,
    switch_scores,
)
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.probes import load_base_model
from agents.internal_rl.run_dir import MetricsLog, RunDir, load_checkpoint, save_checkpoint


def metacontroller_losses(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    batch: Batch,
    alpha: float,
    device: torch.device,
    sample: bool = True,
    kl_per_switch: bool = False,
    switch_cost: float = 0.0,
    code_swap: float = 0.0,
    random_switch_rate: float = 0.0,
) -> dict:
    """Action NLL under the decoded edits, the KL term (weighted by beta when
    ``kl_per_switch``), the switch rate (share of steps after the first with a new code,
    priced at ``switch_cost`` nats each), and the metacontroller's outputs. With
    ``code_swap``, also the action NLL with each step's code swapped for the nearest
    switch code of another episode (``nearest_switch_codes``), at that weight. With
    ``switch_gradient="two_point"`` (``"segment"``), the price and the gate's gradient come
    from ``two_point_gate_loss`` (``segment_gate_loss``) instead, whose extra pass of the base
    model runs only when gradients are on (in training, not in evaluation).
    ``random_switch_rate`` puts the switches at random (``random_switches``), as in a code
    phase; the gate is then not scored."""
    t = tensors(featurizer, batch, device)
    frozen = not any(p.requires_grad for p in model.parameters())
    with torch.no_grad() if frozen else contextlib.nullcontext():
        e_windows, context = model.to_controlled_layer(t["features"], t["segments"])
    layout = EpisodeLayout(batch, device)
    e = layout.to_episodes(e_windows)
    if random_switch_rate:
        switches = random_switches(layout, random_switch_rate)
    else:
        switches = given_switches(meta, layout, batch)
    out = meta(e, layout.lengths, sample=sample, switches=switches)
    acts = t["has_action"]

    def edited(edit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action parameters of the acting tokens with ``edit (E, T, width)``, and each
        one's NLL."""
        params = model.from_controlled_layer(
            e_windows + layout.to_windows(edit, e_windows), context
        )
        params = params[acts]
        return params, -model.action_distribution(params).log_prob(t["actions"][acts])

    def per_step(token_nll: torch.Tensor) -> torch.Tensor:
        """The acting tokens' NLL laid out as episodes ``(E, T)``, 0 where no action."""
        full = token_nll.new_zeros(acts.shape)
        full[acts] = token_nll
        return layout.to_episodes(full)

    params, token_nll = edited(out["edit"])
    nll = token_nll.mean()
    in_episode = layout.to_episodes(acts, fill=False)
    swap_nll = nll.new_zeros(())
    if code_swap:
        donors = nearest_switch_codes(out["z"], out["beta"], in_episode)
        swap_nll = edited(meta.decode(donors, e, layout.lengths))[1].mean()
    kl = kl_to_prior(out["mu"], out["log_var"])
    if kl_per_switch:
        kl = kl * out["beta"]
    kl = kl[in_episode].mean()
    switches = out["beta"][:, 1:][in_episode[:, 1:]].mean()
    if (
        meta.switch_gradient == "straight_through"
        or random_switch_rate
        or not torch.is_grad_enabled()
    ):
        priced = switch_cost * switches
    else:
        with torch.no_grad():
            other = other_choices(out)
            if meta.switch_gradient == "segment":
                probes = segment_probes(out, other, in_episode)
                other = probes["other"]
            other_nll = per_step(edited(meta.decode(other, e, layout.lengths))[1])
        nll_taken = per_step(token_nll.detach())
        if meta.switch_gradient == "two_point":
            priced = two_point_gate_loss(out, nll_taken, other_nll, in_episode, switch_cost)
        else:
            priced = segment_gate_loss(out, nll_taken, other_nll, probes, switch_cost)
    return {
        "loss": nll + alpha * kl + priced + code_swap * swap_nll,
        "switches": switches,
        "action_nll": nll,
        "swap_nll": swap_nll,
        "kl": kl,
        score_name(model): action_score(model, params, t["actions"][acts]).mean(),
        "outputs": out,
        "layout": layout,
    }


def other_choices(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each step's code had the gate chosen otherwise ``(E, T, n_z)``: the code held before
    it where the gate switched, the proposal where it held."""
    held = torch.cat([out["z"][:, :1], out["z"][:, :-1]], dim=1)
    return torch.where(out["beta"][..., None] >= SWITCH_THRESHOLD, held, out["proposal"])


def two_point_gate_loss(
    out: dict[str, torch.Tensor],
    nll: torch.Tensor,
    other_nll: torch.Tensor,
    valid: torch.Tensor,
    switch_cost: float,
) -> torch.Tensor:
    """The gate's loss when it learns from what each switch is worth, not through the codes.

    ``nll`` is each step's action NLL ``(E, T)`` under the codes taken, ``other_nll`` the
    same with each step's code made the other choice (held where the gate switched, the
    proposal where it held; one pass for all steps, so through a recurrent base model a step
    also sees its predecessors' swaps). A switch at ``t`` then gains
    ``gain_t = nll(hold) - nll(switch)`` at that step, and the loss
    ``mean_t p_t (switch_cost - gain_t)`` (gain detached, over the ``valid`` steps after the
    first) moves the gate's probability ``p_t`` towards switching exactly where the step's
    gain exceeds the price: the two-point difference that the straight-through slope only
    approximates. Its value is ``switch_cost`` times the switch probabilities, less the gains.
    """
    switched = out["beta"] >= SWITCH_THRESHOLD
    gain = torch.where(switched, other_nll - nll, nll - other_nll)
    probability = out["switch_probability"][:, 1:]
    return (probability * (switch_cost - gain[:, 1:]).detach())[valid[:, 1:]].mean()


def segment_probes(
    out: dict[str, torch.Tensor], reversed_choice: torch.Tensor, valid: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One probe step drawn at random in every segment of the hard gate's episodes, and the
    codes with each probe's choice reversed from there to the segment's end.

    A segment runs from a switch to the step before the next; a probe is any ``valid`` step
    but the first. From the probe to the segment's end the code is ``reversed_choice`` at the
    probe (``other_choices``: the code held before it where the gate switched, the proposal
    where it held). Returns ``other``
    ``(E, T, n_z)``, ``probe`` and ``after`` ``(E, T)`` (a segment's valid steps from its probe on),
    ``segment`` (an id per episode and segment, ``(E, T)``) and ``weight`` (each probe's
    segment's number of eligible steps, for an unbiased sum over them).
    """
    z, beta = out["z"], out["beta"]
    num, steps = beta.shape
    switched = beta >= SWITCH_THRESHOLD
    time = torch.arange(steps, device=z.device)
    first_id = torch.arange(num, device=z.device)[:, None] * steps  # ids unique per episode
    segment = switched.long().cumsum(1) - 1 + first_id
    eligible = valid & (time > 0)
    key = torch.rand(num, steps, device=z.device).masked_fill(~eligible, -1.0)
    best = key.new_full((num * steps,), -1.0).scatter_reduce(
        0, segment.flatten(), key.flatten(), "amax"
    )
    probe = eligible & (key == best[segment])
    start = torch.full((num * steps,), steps, device=z.device)
    start = start.scatter_reduce(0, segment[probe], time.expand(num, -1)[probe], "amin")
    after = (time >= start[segment]) & valid
    at_probe = start[segment].clamp(max=steps - 1)[..., None].expand_as(z)
    other = torch.where(after[..., None], reversed_choice.gather(1, at_probe), z)
    count = torch.zeros(num * steps, device=z.device).scatter_add(
        0, segment[eligible], torch.ones_like(key)[eligible]
    )
    return {
        "other": other,
        "probe": probe,
        "after": after,
        "segment": segment,
        "weight": count[segment],
    }


def segment_gate_loss(
    out: dict[str, torch.Tensor],
    nll: torch.Tensor,
    other_nll: torch.Tensor,
    probes: dict[str, torch.Tensor],
    switch_cost: float,
) -> torch.Tensor:
    """The gate's loss when a switch is worth what it gains over the segment it opens.

    ``nll`` is each step's action NLL ``(E, T)`` under the codes taken, ``other_nll`` the same
    under ``probes["other"]`` (``segment_probes``). A switch at a probe ``t`` gains
    ``G_t``, the NLL summed from ``t`` to its segment's end without the switch less with it,
    and the loss ``sum_probes w_t p_t (switch_cost - G_t) / eligible steps`` (``G``
    detached; ``w_t`` the segment's eligible steps) estimates without bias the two-point
    loss with every step's gain taken over its segment.
    """
    switched = out["beta"] >= SWITCH_THRESHOLD
    after = probes["after"]
    difference = torch.zeros(nll.numel(), device=nll.device).scatter_add(
        0, probes["segment"][after], (other_nll - nll)[after]
    )[probes["segment"]]
    gain = torch.where(switched, difference, -difference)
    probe = probes["probe"]
    scored = probes["weight"] * out["switch_probability"] * (switch_cost - gain).detach()
    return scored[probe].sum() / probes["weight"][probe].sum().clamp(min=1)


def loss_weights(cfg: MetacontrollerConfig, done: float) -> tuple[float, float]:
    """``(alpha, switch_cost)`` once a share ``done`` of the steps is taken: alpha ramps up
    over the first ``kl_warmup``; the switch cost is 0 until ``switch_cost_start``, then
    ramps up over ``switch_cost_ramp``."""
    alpha = cfg.alpha * min(1.0, done / cfg.kl_warmup) if cfg.kl_warmup else cfg.alpha
    late = done - cfg.switch_cost_start
    ramp = min(1.0, late / cfg.switch_cost_ramp) if cfg.switch_cost_ramp else float(late >= 0)
    return alpha, cfg.switch_cost * max(0.0, ramp)


def train_metacontroller(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    train: EpisodeDataset,
    cfg: MetacontrollerConfig,
    window: int,
    directory: Path,
    seed: int,
    steps: int,
    device: torch.device,
    desc: str = "metacontroller",
) -> None:
    """Adam on every trainable parameter of ``meta`` (and ``model`` when it is not frozen);
    resumable from ``directory / checkpoint.pt``; metrics go to ``directory / metrics.jsonl``.
    With ``cfg.code_phase``, its first steps train the codes under random switches and the
    rest the gate alone."""
    parameters = [p for p in [*meta.parameters(), *model.parameters()] if p.requires_grad]
    cotrained = any(p.requires_grad for p in model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr)
    step, position = 0, DataPosition()
    path = directory / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    if state is not None:
        meta.load_state_dict(state["meta"])
        if cotrained:
            model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, position = state["step"], DataPosition.from_checkpoint(state, path)
    log = MetricsLog(directory / "metrics.jsonl", resume_step=step)
    batches = train.endless_batches(window, cfg.batch_size, seed, position)
    progress = tqdm(total=steps, initial=step, desc=desc, unit="step")
    code_steps = round(cfg.code_phase * steps)
    while step < steps:
        if code_steps and step >= code_steps:
            freeze_codes(meta)
        position, batch = next(batches)
        alpha, switch_cost = loss_weights(cfg, step / steps)
        result = metacontroller_losses(
            model,
            meta,
            featurizer,
            batch,
            alpha,
            device,
            kl_per_switch=cfg.kl_per_switch,
            switch_cost=switch_cost,
            code_swap=cfg.code_swap,
            random_switch_rate=cfg.random_switch_rate if step < code_steps else 0.0,
        )
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        step += 1
        beta = result["outputs"]["beta"][:, 1:].detach()
        names = ("loss", "action_nll", "kl", score_name(model), "switches", "swap_nll")
        record = {k: round(result[k].item(), 5) for k in names}
        log.log(
            step=step,
            alpha=alpha,
            switch_cost=switch_cost,
            mean_beta=round(beta.mean().item(), 5),
            **record,
        )
        progress.update(1)
        progress.set_postfix(nll=f"{record['action_nll']:.3f}", kl=f"{record['kl']:.2f}")
        if step % cfg.checkpoint_interval == 0 or step == steps:
            save_checkpoint(
                path,
                {
                    "meta": meta.state_dict(),
                    **({"model": model.state_dict()} if cotrained else {}),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    **position.checkpoint_fields(),
                },
            )
    progress.close()


@torch.no_grad()
def evaluate_metacontroller(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    heldout: EpisodeDataset,
    cfg: MetacontrollerConfig,
    window: int,
    device: torch.device,
) -> tuple[dict[str, float], list[dict[str, np.ndarray]]]:
    """Held-out NLL and switch scores (codes at their means), and a few episodes to plot."""
    betas, labels, lengths, nll, kl = [], [], [], [], []
    for _, batch in zip(range(cfg.eval_batches), heldout.batches(window, cfg.batch_size, seed=0)):
        result = metacontroller_losses(
            model, meta, featurizer, batch, cfg.alpha, device, False, cfg.kl_per_switch
        )
        layout: EpisodeLayout = result["layout"]
        subgoal = torch.as_tensor(batch.subgoal, device=device)
        nll.append(result["action_nll"].item())
        kl.append(result["kl"].item())
        for b, s, n in zip(
            result["outputs"]["beta"].cpu().numpy(),
            layout.to_episodes(subgoal, fill=IGNORE).cpu().numpy(),
            layout.lengths.cpu().numpy(),
        ):
            betas.append(b[:n])
            labels.append(s[:n])
            lengths.append(n)
    scores = switch_scores(betas, labels, lengths)
    scores |= {"heldout_action_nll": float(np.mean(nll)), "heldout_kl": float(np.mean(kl))}
    examples = [{"beta": b, "subgoal": s} for b, s in zip(betas[:4], labels[:4])]
    return scores, examples


def build_metacontroller(
    model: BaseModel,
    cfg: MetacontrollerConfig,
    device: torch.device,
    forced: bool = False,
    whiten: torch.Tensor | None = None,
) -> MetaController:
    return MetaController(model.config.width, cfg, forced=forced, whiten=whiten).to(device)


def fit_metacontroller(
    run: RunDir,
    config: RunConfig,
    device: torch.device,
    model: BaseModel,
    featurizer: Featurizer,
    directory: Path,
    init_seed: int,
    forced: bool = False,
    steps: int | None = None,
    desc: str = "metacontroller",
) -> MetaController:
    """Train a new metacontroller (with ``model`` when it is trainable) on the run's
    training split and save it to ``directory / metacontroller.pt``, with the model's
    weights when they were co-trained. ``metacontroller.whiten`` measures the frozen
    model's stream; a co-trained model's changes, so it gets none."""
    cfg = config.metacontroller
    frozen = not any(p.requires_grad for p in model.parameters())
    whiten = None
    if cfg.whiten and frozen:
        whiten = stream_whitening(model, featurizer, run, config, device)
    torch.manual_seed(init_seed)
    meta = build_metacontroller(model, cfg, device, forced, whiten)
    train_metacontroller(
        model,
        meta,
        featurizer,
        load_split(run, "train"),
        cfg,
        config.base.window,
        directory,
        config.seed + 11,
        steps or cfg.steps,
        device,
        desc,
    )
    state = {"meta": meta.state_dict()}
    if not frozen:
        state["model"] = model.state_dict()
    save_checkpoint(directory / "metacontroller.pt", state)
    return meta


def load_metacontroller(
    path: Path, model: BaseModel, cfg: MetacontrollerConfig, device: torch.device, forced: bool
) -> MetaController:
    """The saved metacontroller, frozen; a co-trained model's weights are loaded into ``model``."""
    state = load_checkpoint(path, map_location=device)
    if state is None:
        raise FileNotFoundError(f"{path} is missing: run the stage that trains it first.")
    if "model" in state:
        model.load_state_dict(state["model"])
        model.requires_grad_(False).eval()
    meta = build_metacontroller(model, cfg, device, forced, state["meta"].get("decoder.whiten"))
    meta.load_state_dict(state["meta"])
    return meta.requires_grad_(False).eval()


def run_metacontroller_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg = config.metacontroller
    model, featurizer = load_base_model(run, config, device)
    meta = fit_metacontroller(
        run, config, device, model, featurizer, run.stage_dir("metacontroller"), config.seed
    )
    scores, examples = evaluate_metacontroller(
        model, meta.eval(), featurizer, load_split(run, "heldout"), cfg, config.base.window, device
    )
    run.update_summary({f"metacontroller.{k}": round(v, 4) for k, v in scores.items()})
    print("[metacontroller] " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    plot_switching(examples, run.plots / "beta.png", SUBGOAL_NAMES[config.env_id])


SUBGOAL_NAMES: dict[str, str] = {"HierGrid-v0": "ABCD", "HierAnt-v0": "0123"}
"""Env ID -> the name of subgoal label ``i`` at ``[i]``: the grid's pairs A..D, the ant's
colours."""


def plot_switching(examples: list[dict[str, np.ndarray]], path: Path, names: str) -> None:
    """The gate ``beta_t`` over a few held-out episodes, against the true subgoal (Fig. A3),
    each subgoal named by ``names[label]``."""
    figure = Figure(figsize=(8, 1.8 * len(examples)))
    axes = figure.subplots(len(examples), 1, squeeze=False)[:, 0]
    for axis, example in zip(axes, examples):
        beta, subgoal = example["beta"], example["subgoal"]
        steps = np.arange(len(beta))
        axis.plot(steps, beta, "o-", markersize=3, label="beta (switch gate)")
        for t in np.flatnonzero(subgoal[1:] != subgoal[:-1]) + 1:
            axis.axvline(t, color="red", linestyle="--", alpha=0.6)
        for start, label in zip(
            np.r_[0, np.flatnonzero(subgoal[1:] != subgoal[:-1]) + 1],
            subgoal[np.r_[0, np.flatnonzero(subgoal[1:] != subgoal[:-1]) + 1]],
        ):
            axis.text(start + 0.3, 1.05, names[label], color="red", fontsize=9)
        axis.set_ylim(-0.05, 1.2)
        axis.set_ylabel("beta")
    axes[0].legend(loc="center right", fontsize=8)
    axes[-1].set_xlabel("step (red: true subgoal changes)")
    figure.tight_layout()
    figure.savefig(path)
