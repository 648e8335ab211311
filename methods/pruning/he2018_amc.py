"""AMC: AutoML for Model Compression (a DDPG agent chooses each layer's channel-pruning ratio).

Yihui He, Ji Lin, Zhijian Liu, Hanrui Wang, Li-Jia Li, Song Han. "AMC: AutoML for Model Compression and
Acceleration on Mobile Devices". ECCV 2018. arXiv:1802.03494 (v1 titled "ADC: Automated Deep Compression").

Implements
----------
* Sec. 3.1, the state: one embedding per prunable layer t,
  (t, n, c, h, w, stride, k, FLOPs[t], reduced, rest, a_{t-1}) (Eq. (1)), each feature min-max normalised
  over the layers (``layer_embeddings``; ``reduced`` / ``rest`` / ``a_{t-1}`` are filled in during the episode).
* Sec. 3.2, the action: a continuous preserve ratio a_t in (0, 1] for the *input* channels of layer t, i.e.
  the output channels of the layer that feeds it; channel count c' = round(a_t * c).
* Sec. 3.3 / Algorithm 1 (resource-constrained compression): the action is limited so that the budget is
  still reachable when every later layer is pruned as much as allowed (``_max_keep``, the paper's
  "action wall"); reward R_err = -Error of the pruned net *without fine-tuning* on a validation subset
  (here accuracy, which differs by a constant).
* The pruning step the agent calls (Sec. 3.2, channel pruning): keep the input channels with the largest
  sum |W| of the consumer's weights, then fit the consumer's remaining weights by least squares so that its
  output on a calibration set matches the original output (``reconstruct``), as in He et al. 2017.
* Sec. 3.4, the agent: DDPG with actor mu(s) and critic Q(s, a), truncated-normal exploration noise whose
  sigma decays by ``delta_decay`` every episode after a warm-up of random episodes, a replay buffer,
  soft target updates (tau), discount 1 and the same reward for every step of an episode, minus a moving
  average baseline (the released code's variance reduction). The best-reward policy of the search is the
  result (``search``).

Deviations
----------
* Scale: a few dozen episodes (paper: 400, with 100 warm-up) and actor/critic of 64-64 hidden units (paper:
  300-300), with several critic/actor updates per step so that the agent learns from so few episodes; the
  network is LeNet-300-100 (the test) or LeNet-5 (the script's ``--arch``) on Fashion-MNIST, not VGG-16 /
  MobileNet on ImageNet. LeNet-5 is too slow to search inside a test on the shared 2-core machine, and the
  narrow 8-16-channel test CNN leaves no room between policies at 2x (uniform is already near the best).
* The action wall: with ``wall="scale"`` (default) the actor's a_t in [lbound, 1] is mapped linearly onto the
  feasible range [lbound * c, wall] instead of being clipped at the wall (``wall="clip"``, the paper). With a
  tight budget most of [lbound, 1] lies above the wall, so clipped random warm-up episodes almost all take the
  maximum for the first layer and starve the later ones; in our short searches the clipped agent then
  saturated at the wall (seeds 0-2 all ended at the uniform-like policy), the scaled one did not.
* The critic is fitted to R - b with a moving-average baseline b (the released code), discount 1.
* Only plain chains (a flat ``Sequential`` of conv / BN / pooling / activation / Flatten / linear layers) are
  handled: the layer t+1 that reads the channels of layer t must be the next conv/linear. Residual networks
  (the paper's ResNet-50 experiments) are not.
* MACs are those of the conv and linear layers (``surgery.layer_macs``); BatchNorm and pooling are ignored in
  the budget, as the paper counts FLOPs of conv/fc layers.
* The least-squares problems of every layer are built once, from the *original* model's layer inputs and
  outputs (``collect_features``), not from the inputs of the network pruned so far as in He et al. 2017; this
  keeps one episode cheap (the released AMC code does the same by default; its ``use_new_input`` option
  regenerates the inputs).
* The reward is the pruned network's accuracy on the validation subset; the paper uses -error, the same up to
  a constant. The log(FLOPs) reward of the accuracy-guaranteed mode is not implemented.

Reproduce: ``python -m scripts.pruning.he2018_amc --seed 0``.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from methods.pruning.surgery import layer_macs, prune_plan, trace
from nn.activations import ReLU, Sigmoid
from nn.containers import Sequential
from nn.linear import Linear
from nn.losses import MSELoss
from nn.module import Module
from nn.optim import Adam

# ----------------------------------------------------------------------------------- the pruning environment


@dataclass
class PruneLayer:
    """One decision of the agent: the input channels of ``consumer`` = the output channels of ``producer``."""

    producer: str
    consumer: str
    channels: int  # c: input channels of the consumer (output channels of the producer)
    group: int  # consumer input features per channel: kH*kW for a conv, H*W after Flatten, 1 for a linear


def chain_layers(model: Module, input_shape: tuple[int, ...]) -> list[PruneLayer]:
    """Producer/consumer pairs of a plain chain: every conv/linear except the last one feeds the next one."""
    t = trace(model, input_shape)
    dense = [n for n in t.nodes if n.kind in ("conv", "linear", "gconv", "dwconv")]
    if any(n.kind not in ("conv", "linear") for n in dense) or any("." in n.name for n in dense):
        raise ValueError("he2018_amc: only flat Sequential chains of ungrouped Conv2d/Linear layers are supported")
    out = []
    for p, c in itertools.pairwise(dense):
        w = c.module.weight
        cin = len(p.out_atoms)
        group = int(np.prod(w.shape[2:])) if w.ndim == 4 else w.shape[1] // cin
        out.append(PruneLayer(p.name, c.name, cin, group))
    return out


def collect_features(model: Module, x: np.ndarray, layers: list[PruneLayer]) -> dict[str, tuple]:
    """{consumer: (X, Y)}: the consumer's input and its output minus bias in the *original* model (eval mode;
    the model's train/eval mode is restored)."""
    want = {pl.consumer for pl in layers}
    feats = {}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for name, layer in model.named_children():
            y = layer(x)
            if name in want:
                b = layer.bias if layer.bias is not None else 0.0
                yb = y - (b.reshape(1, -1, 1, 1) if y.ndim == 4 else b)
                feats[name] = (x, yb)
            x = y
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)
    return feats


def _patches(x: np.ndarray, conv, rng: np.random.Generator, per_image: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``per_image`` output positions per image: (rows, Ci*kH*kW) patches and the (rows,) position ids."""
    kh, kw = conv.kernel_size
    (sh, sw), ((ph, pw), _) = conv.stride, conv._pads
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _c, hp, wp = xp.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    pos = np.stack([rng.choice(ho * wo, size=min(per_image, ho * wo), replace=False) for _ in range(n)])  # (N, P)
    i, j = pos // wo, pos % wo
    rows = []
    for a in range(kh):
        for b in range(kw):
            rows.append(xp[np.arange(n)[:, None], :, i * sh + a, j * sw + b])  # (N, P, Ci)
    patches = np.stack(rows, axis=-1)  # (N, P, Ci, kH*kW), matching the weight's (Ci, kH, kW) order
    return patches.reshape(n * pos.shape[1], -1), pos


def regression_data(model: Module, feats: dict, layers: list[PruneLayer], rng: np.random.Generator,
                    per_image: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{consumer: (A, Y)} least-squares problems: A (rows, c*group) float64, Y (rows, Co) float64."""
    mods = dict(model.named_children())
    out = {}
    for pl in layers:
        x, y = feats[pl.consumer]
        m = mods[pl.consumer]
        if x.ndim == 4 and y.ndim == 4:
            a, pos = _patches(x, m, rng, per_image)
            co, wo = y.shape[1], y.shape[3]
            yy = y[np.arange(y.shape[0])[:, None], :, pos // wo, pos % wo].reshape(-1, co)  # (N*P, Co)
        else:
            a, yy = x.reshape(x.shape[0], -1), y
        out[pl.consumer] = (a.astype(np.float64), yy.astype(np.float64))
    return out


def select_channels(weight: np.ndarray, channels: int, keep: int) -> np.ndarray:
    """Sorted indices of the ``keep`` input channels with the largest sum |W| (conv (Co, Ci, kH, kW) or linear
    (O, c*group) weight viewed per input channel)."""
    co = weight.shape[0]
    score = np.abs(weight.astype(np.float64)).reshape(co, channels, -1).sum(axis=(0, 2))  # (c,)
    return np.sort(np.argsort(-score, kind="stable")[:keep])


def reconstruct(weight: np.ndarray, a: np.ndarray, y: np.ndarray, keep: np.ndarray, channels: int,
                ridge: float = 1e-6) -> np.ndarray:
    """Least-squares refit of a consumer's weights on its kept input channels; pruned columns become zero.

    min_W' ||A[:, kept] W'^T - Y||^2 + ridge * tr(A^T A)/d * ||W'||^2, returned in ``weight``'s shape and dtype.
    """
    co = weight.shape[0]
    group = a.shape[1] // channels
    cols = (keep[:, None] * group + np.arange(group)).ravel()  # (k*group,) columns of the kept channels
    ak = a[:, cols]  # (rows, k*group)
    g = ak.T @ ak  # (K, K)
    g[np.diag_indices_from(g)] += ridge * np.trace(g) / max(len(cols), 1) + 1e-12
    wk = np.linalg.solve(g, ak.T @ y)  # (K, Co)
    w = np.zeros((co, a.shape[1]), np.float64)
    w[:, cols] = wk.T
    return w.reshape(weight.shape).astype(weight.dtype)


def prune_with_ratios(model: Module, layers: list[PruneLayer], keep_counts: list[int], reg: dict | None,
                      input_shape: tuple[int, ...]) -> Module:
    """A pruned copy: layer t keeps ``keep_counts[t]`` input channels (largest sum |W|), its weights refit by
    least squares when ``reg`` (from ``regression_data``) is given, and the producer's channels removed."""
    pruned = copy.deepcopy(model)
    mods = dict(pruned.named_children())
    orig = dict(model.named_children())
    plan = {}
    for pl, k in zip(layers, keep_counts):
        if not 1 <= k <= pl.channels:
            raise ValueError(f"he2018_amc: layer {pl.consumer!r} must keep 1..{pl.channels} channels, got {k}")
        w0 = orig[pl.consumer].weight
        keep = select_channels(w0, pl.channels, k)
        if k < pl.channels:
            plan[pl.producer] = keep
            if reg is not None:
                a, y = reg[pl.consumer]
                mods[pl.consumer].weight[...] = reconstruct(w0, a, y, keep, pl.channels)
    return prune_plan(pruned, plan, input_shape) if plan else pruned


def chain_macs(base: dict[str, int], layers: list[PruneLayer], counts: list[int]) -> int:
    """Conv/linear MACs after keeping ``counts[t]`` input channels of each consumer: MACs scale with the kept
    fraction of the layer's inputs and of its outputs."""
    keep = {pl.consumer: k / pl.channels for pl, k in zip(layers, counts)}
    out_keep = {pl.producer: k / pl.channels for pl, k in zip(layers, counts)}
    return round(sum(m * keep.get(n, 1.0) * out_keep.get(n, 1.0) for n, m in base.items()))


def _max_keep(base, layers, counts_so_far: list[int], lbound: float, budget: float) -> int:
    """The action wall: the most channels layer t may keep so that the budget is met when every later layer
    keeps only ceil(lbound * c)."""
    t = len(counts_so_far)
    rest = [max(1, int(np.ceil(lbound * pl.channels))) for pl in layers[t + 1:]]
    for k in range(layers[t].channels, 0, -1):
        if chain_macs(base, layers, [*counts_so_far, k, *rest]) <= budget:
            return k
    return 1


def uniform_counts(base, layers, budget: float) -> tuple[float, list[int]]:
    """The hand-crafted baseline: the largest single preserve ratio (step 0.005) whose MACs fit the budget."""
    for r in np.arange(1.0, 0.0, -0.005):
        counts = [max(1, round(r * pl.channels)) for pl in layers]
        if chain_macs(base, layers, counts) <= budget:
            return float(r), counts
    return 0.0, [1] * len(layers)


def layer_embeddings(model: Module, layers: list[PruneLayer], input_shape: tuple[int, ...]) -> np.ndarray:
    """Eq. (1) static part: (T, 11) float64 with columns t, n, c, h, w, stride, k, FLOPs[t], reduced, rest,
    a_{t-1}; the last three are zero here and set during the episode."""
    nodes = {n.name: n for n in trace(model, input_shape).nodes}
    macs = layer_macs(model, input_shape)
    rows = []
    for t, pl in enumerate(layers):
        node = nodes[pl.consumer]
        m = node.module
        w = m.weight
        if w.ndim == 4:
            h = node.out_shape[2] * m.stride[0]
            rows.append([t, w.shape[0], pl.channels, h, h, m.stride[0], w.shape[2], macs[pl.consumer], 0, 0, 0])
        else:
            rows.append([t, w.shape[0], pl.channels, 1, 1, 0, 1, macs[pl.consumer], 0, 0, 0])
    return np.array(rows, np.float64)


def _normalise(e: np.ndarray) -> np.ndarray:
    lo, hi = e.min(axis=0), e.max(axis=0)
    return (e - lo) / np.where(hi > lo, hi - lo, 1.0)


# ----------------------------------------------------------------------------------- DDPG


def _mlp(n_in: int, hidden: int, rng, out_act: Module | None) -> Sequential:
    layers = [Linear(n_in, hidden, rng=rng, dtype=np.float64), ReLU(), Linear(hidden, hidden, rng=rng, dtype=np.float64),
              ReLU(), Linear(hidden, 1, rng=rng, dtype=np.float64)]
    return Sequential(*layers, *([out_act] if out_act is not None else []))


class DDPG:
    """Actor mu(s) in (0, 1), critic Q(s, a); targets follow by Polyak averaging with ``tau``."""

    def __init__(self, state_dim: int, rng: np.random.Generator, hidden: int = 64, lr_actor: float = 1e-3,
                 lr_critic: float = 1e-3, tau: float = 0.01, discount: float = 1.0) -> None:
        self.actor = _mlp(state_dim, hidden, rng, Sigmoid())
        self.critic = _mlp(state_dim + 1, hidden, rng, None)
        self.actor_t, self.critic_t = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.opt_a = Adam(self.actor, lr=lr_actor)
        self.opt_c = Adam(self.critic, lr=lr_critic)
        self.tau, self.discount = tau, discount
        self.mse = MSELoss()

    def act(self, s: np.ndarray) -> float:
        return float(self.actor(s[None])[0, 0])

    def update(self, s, a, r, s2, done) -> tuple[float, float]:
        """One DDPG step on a batch: s, s2 (B, D); a, r, done (B,). Returns (critic loss, mean Q of mu(s))."""
        # Critic target: y = r + discount * (1 - done) * Q'(s', mu'(s'))
        q2 = self.critic_t(np.concatenate([s2, self.actor_t(s2)], axis=1))[:, 0]  # (B,)
        y = r + self.discount * (1.0 - done) * q2
        self.critic.zero_grad()
        q = self.critic(np.concatenate([s, a[:, None]], axis=1))  # (B, 1)
        loss = self.mse(q, y[:, None])
        self.critic.backward(self.mse.backward())
        self.opt_c.step()
        # Actor: maximise Q(s, mu(s)); dQ/da is the last column of the critic's input gradient.
        self.actor.zero_grad()
        mu = self.actor(s)  # (B, 1)
        qa = self.critic(np.concatenate([s, mu], axis=1))
        g_in = self.critic.backward(np.full_like(qa, -1.0 / len(s)))  # (B, D+1)
        self.actor.backward(g_in[:, -1:])
        self.opt_a.step()
        for net, tgt in ((self.actor, self.actor_t), (self.critic, self.critic_t)):
            for (_, p), (_, pt) in zip(net.named_parameters(), tgt.named_parameters()):
                pt *= 1.0 - self.tau
                pt += self.tau * p
        return float(loss), float(qa.mean())


def truncated_normal(rng: np.random.Generator, mu: float, sigma: float, lo: float, hi: float) -> float:
    """One sample of N(mu, sigma) truncated to [lo, hi] (rejection, then clipping as a fallback)."""
    for _ in range(100):
        v = rng.normal(mu, sigma)
        if lo <= v <= hi:
            return float(v)
    return float(np.clip(mu, lo, hi))


@dataclass(frozen=True)
class SearchCfg:
    episodes: int = 100
    warmup: int = 30  # random episodes before the actor is used (paper: 100 of 400)
    lbound: float = 0.05  # smallest preserve ratio (paper: 0.2; our 5x budget needs more room)
    rbound: float = 1.0
    init_delta: float = 0.5  # exploration sigma (paper: 0.5, decay 0.95 per episode)
    delta_decay: float = 0.95
    batch_size: int = 32
    updates_per_step: int = 4
    hidden: int = 64
    lr_actor: float = 1e-3
    lr_critic: float = 1e-3
    tau: float = 0.01
    moving_alpha: float = 0.5  # reward baseline: b <- b + alpha (R - b)
    reward_scale: float = 1.0  # the critic is fitted to reward_scale * (R - b)
    wall: str = "scale"  # "clip" (paper) or "scale" (the action spans the feasible range; see Deviations)


def search(model: Module, input_shape: tuple[int, ...], budget_ratio: float,
           evaluate: Callable[[Module], float], calib_x: np.ndarray, rng: np.random.Generator,
           cfg: SearchCfg = SearchCfg()) -> dict:
    """Algorithm 1: search per-layer preserve ratios so that conv/linear MACs <= budget_ratio * dense MACs.

    Parameters
    ----------
    evaluate : pruned model -> validation accuracy (the reward), no fine-tuning
    calib_x : (N, ...) float inputs used for the least-squares reconstruction

    Returns
    -------
    dict with ``counts`` (best kept channels per layer), ``ratios``, ``reward``, ``macs``, ``budget``,
    ``layers`` (the PruneLayer list), ``history`` (one row per episode) and ``reg`` (the regression data).
    """
    if not 0.0 < budget_ratio <= 1.0:
        raise ValueError(f"he2018_amc: budget_ratio must be in (0, 1], got {budget_ratio}")
    if cfg.wall not in ("scale", "clip"):
        raise ValueError(f"he2018_amc: wall must be 'scale' or 'clip', got {cfg.wall!r}")
    layers = chain_layers(model, input_shape)
    base = layer_macs(model, input_shape)
    budget = budget_ratio * sum(base.values())
    reg = regression_data(model, collect_features(model, calib_x, layers), layers, rng)
    emb = layer_embeddings(model, layers, input_shape)
    total = float(sum(base.values()))
    agent = DDPG(emb.shape[1], rng, cfg.hidden, cfg.lr_actor, cfg.lr_critic, cfg.tau)
    buffer: list[tuple] = []
    baseline, best, history = None, None, []
    T = len(layers)
    for ep in range(cfg.episodes):
        counts, states, actions = [], [], []
        prev = 1.0
        for t, pl in enumerate(layers):
            e = emb.copy()
            # Eq. (1): reduced = MACs removed so far, rest = MACs of the later layers (fractions of the total)
            e[t, 8] = (total - chain_macs(base, layers[:t], counts)) / total if t else 0.0
            e[t, 9] = sum(base[q.consumer] for q in layers[t + 1:]) / total
            e[t, 10] = prev
            s = _normalise(np.vstack([emb[:, :8], e[t:t + 1, :8]]))[-1]
            s = np.concatenate([s, e[t, 8:]])
            if ep < cfg.warmup:
                a = float(rng.uniform(cfg.lbound, cfg.rbound))
            else:
                delta = cfg.init_delta * cfg.delta_decay ** (ep - cfg.warmup)
                a = truncated_normal(rng, agent.act(s), delta, cfg.lbound, cfg.rbound)
            kmax = _max_keep(base, layers, counts, cfg.lbound, budget)
            kmin = min(max(1, int(np.ceil(cfg.lbound * pl.channels))), kmax)
            if cfg.wall == "clip":  # the paper: a_t = min(a_t, wall)
                k = min(max(kmin, round(a * pl.channels)), kmax)
            else:  # "scale": a_t in [lbound, rbound] spans the feasible range [kmin, kmax]
                u = (a - cfg.lbound) / (cfg.rbound - cfg.lbound)
                k = kmin + round(u * (kmax - kmin))
            counts.append(k)
            states.append(s)
            actions.append(a)
            prev = k / pl.channels
        pruned = prune_with_ratios(model, layers, counts, reg, input_shape)
        reward = float(evaluate(pruned))
        baseline = reward if baseline is None else baseline + cfg.moving_alpha * (reward - baseline)
        for t in range(T):
            s2 = states[t + 1] if t + 1 < T else states[t]
            buffer.append((states[t], actions[t], cfg.reward_scale * (reward - baseline), s2, float(t == T - 1)))
        macs = chain_macs(base, layers, counts)
        history.append({"episode": ep, "reward": reward, "macs": macs, **{f"keep_{pl.consumer}": k
                                                                          for pl, k in zip(layers, counts)}})
        if best is None or reward > best["reward"]:
            best = {"reward": reward, "counts": list(counts), "macs": macs}
        if ep >= cfg.warmup and len(buffer) >= cfg.batch_size:
            for _ in range(cfg.updates_per_step * T):
                idx = rng.choice(len(buffer), cfg.batch_size, replace=False)
                s_b, a_b, r_b, s2_b, d_b = (np.array(v, np.float64) for v in zip(*(buffer[i] for i in idx)))
                agent.update(s_b, a_b, r_b, s2_b, d_b)
    return {**best, "ratios": [k / pl.channels for pl, k in zip(layers, best["counts"])], "budget": budget,
            "dense_macs": int(total), "layers": layers, "history": history, "reg": reg}
