"""PyTorch reference of a whole actor-critic update of the reinforcement-learning agents
(`plasticity bench maze-agent`, `plasticity bench cue-reward`), written the way the
Backpropamine code works (ICLR 2019, arXiv 2002.10585; implemented here from the paper's
equations): B episodes rolled out together step by step with autograd on, actions sampled from
the softmax policy at each step, the A2C loss over the whole rollout, backward through every
step (it stores every step's traces), Adam.

Network (this project's `tasks/a2c.rs`, `layer.rs`; ICML 2018 eq. 1-2, ICLR 2019 eq. 1-5):

    x_t      = W_in obs_t + b_in
    y_t      = tanh(y_{t-1} (w + alpha * Hebb_t) + x_t)           rnn: tanh(y_{t-1} w + x_t)
    plastic:   Hebb_t+1 = clip((1 - eta) Hebb_t + eta outer(y_{t-1}, y_t))
    M_t      = tanh(m . y_t + m_b); eta_j = M_t, or v_j M_t + b_j with --fan-out
    modplast:  Hebb_t+1 = clip(Hebb_t + eta_j outer(y_{t-1}, y_t)_ij)            (simple)
    modul:     Hebb_t+1 = clip(Hebb_t + eta_j E_t,ij)                            (retroactive)
               E_t+1    = (1 - eta_E) E_t + eta_E outer(y_{t-1}, y_t)
    logits_t = W_pi y_t + b_pi,  V_t = W_v y_t + b_v

    clip: [-1, 1]; y_0 = 0, Hebb_0 = E_0 = 0; Hebb and E: [B, N, N], torch.bmm.

Loss (a2c.rs; ICLR 2019 section 4.2), per episode, averaged over the batch:

    R_t = r_t + gamma R_{t+1}
    sum_t [ -log pi(a_t) (R_t - V_t).detach() + value_weight (R_t - V_t)^2
            + prob_penalty sum_a pi_t(a)^2 ]

(the penalty on the summed squared probabilities is this project's regulariser, in place of an
entropy bonus: both push the policy away from certainty, at the same cost.)

Tasks (the same settings as `plasticity bench`; the environments are the real ones,
vectorised over the batch in numpy, so their cost is small next to the network's):

    maze-agent  13x13 maze, obs 16, 4 actions, T=200, B=30, N=100 (101 for plastic),
                reward 10, wall penalty 0
    cue-reward  4 cues of 20 bits, obs 26, 2 actions, T=120, B=30, N=200, reward +-1

gamma 0.9, value_weight 0.1, prob_penalty 0.03, Adam lr 1e-4, eps 1e-4, eta 0.1,
alpha ~ 0.01 N(0, 1), w ~ N(0, 1/N). No gradient-norm clipping by default (`plasticity bench`
times the update without it; `--max-grad-norm 4` adds the training loop's).

Prints one JSON object: ms_per_update (ms per update, median after 2 warm-up updates), the
median rollout+loss / backward / Adam parts, peak memory.

    bench/.venv/bin/python bench/pytorch_agent.py --task maze-agent --model modul --episodes 5
    bench/.venv/bin/python bench/pytorch_agent.py --check    # equations and gradients, small sizes
"""
import argparse
import json
import math
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

MODELS = ("rnn", "plastic", "modplast", "modul")

TASKS = {
    # obs, actions, steps, batch, neurons (plastic, others)
    "maze-agent": dict(obs=16, actions=4, steps=200, batch=30, neurons=(101, 100)),
    "cue-reward": dict(obs=26, actions=2, steps=120, batch=30, neurons=(200, 200)),
}
SETTINGS = dict(clip=1.0, eta=0.1, alpha_std=0.01, gamma=0.9, value_weight=0.1,
                prob_penalty=0.03, lr=1e-4, adam_eps=1e-4)


class MazeEnv:
    """The maze of `tasks/maze.rs`, B episodes at once: walls on the border and at every cell
    with two even coordinates except the centre; the agent starts at the centre; the reward
    cell is a random free cell other than the centre; reaching it gives `reward` and teleports
    the agent to a random free cell other than the reward cell. Observation (16): the 3x3
    walls, previous reward, previous action one-hot (4), t / T, bias."""

    obs_size, actions = 16, 4
    moves = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # up, down, left, right

    def __init__(self, batch, steps, rng, size=13, reward=10.0, wall_penalty=0.0):
        self.b, self.steps, self.rng = batch, steps, rng
        self.reward, self.wall_penalty = reward, wall_penalty
        r, c = np.mgrid[0:size, 0:size]
        centre = size // 2
        self.walls = ((r == 0) | (c == 0) | (r == size - 1) | (c == size - 1)
                      | ((r % 2 == 0) & (c % 2 == 0) & ~((r == centre) & (c == centre))))
        self.free = np.argwhere(~self.walls)
        self.pos = np.full((batch, 2), centre)
        self.goal = self.random_free(np.full((batch, 2), centre))
        self.prev_reward = np.zeros(batch, np.float32)
        self.prev_action = np.full(batch, -1)

    def random_free(self, avoid):
        cells = self.free[self.rng.integers(len(self.free), size=len(avoid))]
        same = (cells == avoid).all(1)
        while same.any():
            cells[same] = self.free[self.rng.integers(len(self.free), size=same.sum())]
            same = (cells == avoid).all(1)
        return cells

    def observe(self, t):
        obs = np.zeros((self.b, 16), np.float32)
        d = np.arange(-1, 2)
        rows = self.pos[:, 0, None, None] + d[None, :, None]
        cols = self.pos[:, 1, None, None] + d[None, None, :]
        obs[:, :9] = self.walls[rows, cols].reshape(self.b, 9)
        obs[:, 9] = self.prev_reward
        acted = self.prev_action >= 0
        obs[np.nonzero(acted)[0], 10 + self.prev_action[acted]] = 1.0
        obs[:, 14] = t / self.steps
        obs[:, 15] = 1.0
        return obs

    def step(self, t, action):
        target = self.pos + self.moves[action]
        hit = self.walls[target[:, 0], target[:, 1]]
        self.pos = np.where(hit[:, None], self.pos, target)
        reward = -self.wall_penalty * hit.astype(np.float32)
        found = (self.pos == self.goal).all(1)
        if found.any():
            reward[found] += self.reward
            self.pos[found] = self.random_free(self.goal[found])
        self.prev_reward, self.prev_action = reward.astype(np.float32), action
        return self.prev_reward


class CueEnv:
    """The cue-reward task of `tasks/cue_reward.rs` (defaults), B episodes at once: 4 distinct
    random binary cues of 20 bits, one the target; trials of 4 steps: cue A, cue B (a random
    pair of different cues), response signal (action 1 = respond: +reward when it responds
    exactly when the target was in the pair, else -reward), nothing (a new pair is drawn).
    Observation (26): the cue shown, response signal, previous reward, previous action one-hot
    (2), t / T, bias."""

    obs_size, actions = 26, 2

    def __init__(self, batch, steps, rng, cues=4, bits=20, reward=1.0):
        self.b, self.steps, self.rng, self.k, self.bits = batch, steps, rng, cues, bits
        self.reward = reward
        self.cues = rng.integers(0, 2, size=(batch, cues, bits)).astype(np.float32)
        for e in range(batch):  # distinct cues in each episode
            while len({c.tobytes() for c in self.cues[e]}) < cues:
                self.cues[e] = rng.integers(0, 2, size=(cues, bits))
        self.target = rng.integers(cues, size=batch)
        self.pair = self.draw_pair()
        self.prev_reward = np.zeros(batch, np.float32)
        self.prev_action = np.full(batch, -1)

    def draw_pair(self):
        a = self.rng.integers(self.k, size=self.b)
        return np.stack([a, (a + self.rng.integers(1, self.k, size=self.b)) % self.k], 1)

    def observe(self, t):
        obs = np.zeros((self.b, self.obs_size), np.float32)
        e = np.arange(self.b)
        phase = t % 4
        if phase < 2:
            obs[:, :self.bits] = self.cues[e, self.pair[:, phase]]
        elif phase == 2:
            obs[:, self.bits] = 1.0
        obs[:, self.bits + 1] = self.prev_reward
        acted = self.prev_action >= 0
        obs[np.nonzero(acted)[0], self.bits + 2 + self.prev_action[acted]] = 1.0
        obs[:, self.bits + 4] = t / self.steps
        obs[:, self.bits + 5] = 1.0
        return obs

    def step(self, t, action):
        reward = np.zeros(self.b, np.float32)
        if t % 4 == 2:
            shown = (self.pair == self.target[:, None]).any(1)
            reward = np.where((action == 1) == shown, self.reward, -self.reward).astype(np.float32)
        elif t % 4 == 3:
            self.pair = self.draw_pair()
        self.prev_reward, self.prev_action = reward, action
        return reward


ENVS = {"maze-agent": MazeEnv, "cue-reward": CueEnv}


class Agent(torch.nn.Module):
    """Input layer, recurrent network (rnn | plastic | modplast | modul), policy and value."""

    def __init__(self, model, n, obs, actions, fan_out=False, clip=1.0, eta=0.1, alpha_std=0.01):
        super().__init__()
        self.model, self.n, self.clip, self.fan_out = model, n, clip, fan_out
        self.inp = torch.nn.Linear(obs, n)
        self.w = torch.nn.Parameter(torch.randn(n, n) / math.sqrt(n))
        self.plastic = model != "rnn"
        self.modulated = model in ("modplast", "modul")
        if self.plastic:
            self.alpha = torch.nn.Parameter(alpha_std * torch.randn(n, n))
        if model in ("plastic", "modul"):  # modplast has no fixed rate
            self.eta = torch.nn.Parameter(torch.full((1,), eta))
        if self.modulated:
            bound = 1.0 / math.sqrt(n)
            self.m = torch.nn.Parameter(torch.empty(n).uniform_(-bound, bound))
            self.m_bias = torch.nn.Parameter(torch.zeros(1))
            if fan_out:
                self.fan_w = torch.nn.Parameter(torch.empty(n).uniform_(-1.0, 1.0))
                self.fan_b = torch.nn.Parameter(torch.zeros(n))
        self.policy = torch.nn.Linear(n, actions)
        self.value = torch.nn.Linear(n, 1)

    def initial_state(self, batch, dtype=torch.float32, device="cpu"):
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        n = self.n
        return (z(batch, n), z(batch, n, n) if self.plastic else None,
                z(batch, n, n) if self.model == "modul" else None)

    def step(self, state, obs):
        """One step of B episodes: obs [B, obs] -> logits [B, A], value [B], new state."""
        y, hebb, elig = state
        x = self.inp(obs)
        if not self.plastic:
            y_new = torch.tanh(y.mm(self.w) + x)
            return self.policy(y_new), self.value(y_new).squeeze(1), (y_new, None, None)
        y_new = torch.tanh(torch.bmm(y.unsqueeze(1), self.w + self.alpha * hebb).squeeze(1) + x)
        outer = torch.bmm(y.unsqueeze(2), y_new.unsqueeze(1))  # outer(y_{t-1}, y_t): [B, N, N]
        if self.model == "plastic":
            hebb = (1 - self.eta) * hebb + self.eta * outer
        else:
            mod = torch.tanh(y_new.mv(self.m) + self.m_bias)  # M(t): [B]
            if self.fan_out:  # eta_j = v_j M + b_j: [B, 1, N]
                rate = (mod.unsqueeze(1) * self.fan_w + self.fan_b).unsqueeze(1)
            else:
                rate = mod.view(-1, 1, 1)
            if self.model == "modplast":
                hebb = hebb + rate * outer
            else:
                hebb = hebb + rate * elig  # eq. 4 uses E(t), before this step's coincidence
                elig = (1 - self.eta) * elig + self.eta * outer
        if self.clip is not None:
            hebb = torch.clamp(hebb, -self.clip, self.clip)
        return self.policy(y_new), self.value(y_new).squeeze(1), (y_new, hebb, elig)


def returns(rewards, gamma):
    """R_t = r_t + gamma R_{t+1} of rewards [B, T] (numpy), float64 accumulation."""
    out = np.zeros(rewards.shape, np.float64)
    acc = np.zeros(rewards.shape[0], np.float64)
    for t in range(rewards.shape[1] - 1, -1, -1):
        acc = rewards[:, t] + gamma * acc
        out[:, t] = acc
    return out


def a2c_loss(logits, values, actions, rets, s, fixed_advantage=None):
    """logits [B, T, A], values [B, T], actions [B, T] (long), rets [B, T] -> the loss.
    `fixed_advantage` replaces the detached advantage of the policy term (for gradcheck)."""
    batch = logits.shape[0]
    logp = F.log_softmax(logits, 2).gather(2, actions.unsqueeze(2)).squeeze(2)
    probs = F.softmax(logits, 2)
    advantage = rets - values
    weight = advantage.detach() if fixed_advantage is None else fixed_advantage
    policy_loss = -(logp * weight).sum()
    value_loss = advantage.pow(2).sum()
    penalty = probs.pow(2).sum()
    return (policy_loss + s["value_weight"] * value_loss + s["prob_penalty"] * penalty) / batch


def rollout_loss(agent, env, steps, batch, s, dev, dtype=torch.float32, record=None):
    """The rollout with autograd on and the A2C loss. `record` (a list) receives the
    observations [B, T, obs], actions [B, T] and returns [B, T] (for the check)."""
    state = agent.initial_state(batch, dtype, dev)
    logits, values, actions, rewards, observations = [], [], [], [], []
    for t in range(steps):
        obs = torch.from_numpy(env.observe(t)).to(dev, dtype)
        lg, v, state = agent.step(state, obs)
        a = torch.multinomial(F.softmax(lg.detach(), 1), 1).squeeze(1)
        a_host = a.cpu().numpy()
        rewards.append(env.step(t, a_host))
        logits.append(lg)
        values.append(v)
        actions.append(a)
        observations.append(obs)
    rets = torch.from_numpy(returns(np.stack(rewards, 1), s["gamma"])).to(dev, dtype)
    actions = torch.stack(actions, 1)
    if record is not None:
        record += [torch.stack(observations, 1), actions, rets]
    return a2c_loss(torch.stack(logits, 1), torch.stack(values, 1), actions, rets, s)


def replay_loss(agent, obs, actions, rets, s, fixed_advantage=None, values_out=None):
    """The same loss from recorded observations [B, T, obs], actions and returns
    (`values_out`, a list, receives the values [B, T])."""
    state = agent.initial_state(obs.shape[0], obs.dtype, obs.device)
    logits, values = [], []
    for t in range(obs.shape[1]):
        lg, v, state = agent.step(state, obs[:, t])
        logits.append(lg)
        values.append(v)
    values = torch.stack(values, 1)
    if values_out is not None:
        values_out.append(values)
    return a2c_loss(torch.stack(logits, 1), values, actions, rets, s, fixed_advantage)


def reference_step(model, fan_out, clip, p, y, hebb, elig, x):
    """One step of one episode, element by element from the equations (numpy, float64):
    p holds w, alpha, eta, m, m_bias, fan_w, fan_b; x = W_in obs + b_in."""
    n = len(y)
    y_new = np.array([math.tanh(sum((p["w"][i, j] + (p["alpha"][i, j] * hebb[i, j]
                                                       if model != "rnn" else 0.0)) * y[i]
                                    for i in range(n)) + x[j]) for j in range(n)])
    if model == "rnn":
        return y_new, hebb, elig
    hebb, elig = hebb.copy(), elig.copy()
    if model == "plastic":
        for i in range(n):
            for j in range(n):
                hebb[i, j] = (1 - p["eta"]) * hebb[i, j] + p["eta"] * y[i] * y_new[j]
    else:
        mod = math.tanh(sum(p["m"][j] * y_new[j] for j in range(n)) + p["m_bias"])
        rate = [p["fan_w"][j] * mod + p["fan_b"][j] if fan_out else mod for j in range(n)]
        for i in range(n):
            for j in range(n):
                if model == "modplast":
                    hebb[i, j] = hebb[i, j] + rate[j] * y[i] * y_new[j]
                else:
                    hebb[i, j] = hebb[i, j] + rate[j] * elig[i, j]
                    elig[i, j] = (1 - p["eta"]) * elig[i, j] + p["eta"] * y[i] * y_new[j]
    if clip is not None:
        hebb = np.clip(hebb, -clip, clip)
    return y_new, hebb, elig


def check(seed=0):
    """For every model (and fan-out): the batched step equals the element-wise equations over
    a few steps (float64, a clip that binds), and the rollout's loss has the gradients that
    finite differences give (torch.autograd.gradcheck on the replayed rollout, no clip)."""
    torch.manual_seed(seed)
    ok = True
    s = SETTINGS
    for task in TASKS:
        for model in MODELS:
            for fan_out in ([False, True] if model in ("modplast", "modul") else [False]):
                env_cls = ENVS[task]
                n, b, steps = 7, 3, 9
                agent = Agent(model, n, env_cls.obs_size, env_cls.actions, fan_out, clip=0.05,
                              alpha_std=1.0).double()
                with torch.no_grad():  # larger weights than at init, so every term matters
                    agent.w.mul_(2.0)
                    if agent.modulated:
                        agent.m.mul_(3.0)
                        agent.m_bias.fill_(0.3)
                        if fan_out:
                            agent.fan_b.uniform_(-0.5, 0.5)
                    if model in ("plastic", "modul"):
                        agent.eta.fill_(0.4)
                p = {k: v.detach().numpy().astype(np.float64) for k, v in agent.named_parameters()}
                p = {k: (float(v[0]) if v.shape == (1,) else v) for k, v in p.items()}
                rng = np.random.default_rng(seed)
                env = env_cls(b, steps, rng)
                state = agent.initial_state(b, torch.float64)
                ref = [(np.zeros(n), np.zeros((n, n)), np.zeros((n, n))) for _ in range(b)]
                worst = 0.0
                for t in range(steps):
                    obs = torch.from_numpy(env.observe(t)).double()
                    _, _, state = agent.step(state, obs)
                    x = agent.inp(obs).detach().numpy()
                    for e in range(b):
                        ref[e] = reference_step(model, fan_out, 0.05, p, *ref[e], x[e])
                        got = [state[0][e]] + [state[k][e] for k in (1, 2) if state[k] is not None]
                        want = [ref[e][0]] + [ref[e][k] for k in (1, 2) if state[k] is not None]
                        for g, r in zip(got, want):
                            worst = max(worst, float(np.abs(g.detach().numpy() - r).max()))
                    env.step(t, rng.integers(env_cls.actions, size=b))
                clipped = (state[1].abs() >= 0.05 - 1e-12).float().mean().item() if agent.plastic else 0
                # Gradients: replay a sampled rollout without clipping (gradcheck needs a
                # smooth function); every parameter must get a gradient.
                agent.clip = None
                with torch.no_grad():
                    for prm in agent.parameters():
                        prm.mul_(0.5)
                record = []
                loss = rollout_loss(agent, env_cls(b, steps, np.random.default_rng(seed)), steps,
                                    b, s, "cpu", torch.float64, record)
                obs, actions, rets = record
                values = []
                replayed = replay_loss(agent, obs, actions, rets, s, values_out=values)
                same = abs(float(replayed.detach()) - float(loss.detach())) < 1e-12
                # The policy term's advantage is detached: finite differences must see it fixed.
                adv0 = (rets - values[0]).detach()
                names, params = zip(*agent.named_parameters())
                grads = torch.autograd.grad(replayed, params)
                zero = [k for k, g in zip(names, grads) if float(g.abs().max()) == 0.0]
                inputs = [prm.detach().clone().requires_grad_() for prm in params]
                gc = torch.autograd.gradcheck(
                    lambda *ps: _replay_with(agent, names, ps, obs, actions, rets, s, adv0),
                    inputs, eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=False)
                good = worst < 1e-12 and same and gc and not zero
                ok &= good
                print(f"check {task} {model}{' fan-out' if fan_out else ''}: N={n} B={b} T={steps}"
                      f" step vs equations {worst:.1e} (clip binding on {100 * clipped:.0f}% of"
                      f" Hebb), replay {'=' if same else '!='} rollout, gradcheck"
                      f" {'ok' if gc else 'FAILED'}"
                      f"{', no gradient: ' + ' '.join(zero) if zero else ''}"
                      f"{'' if good else '  <- FAILED'}")
    print(f"check: {'ok' if ok else 'FAILED'}")
    return ok


def _replay_with(agent, names, ps, obs, actions, rets, s, fixed_advantage):
    """replay_loss with the parameters replaced by ps (for gradcheck)."""
    saved = {k: getattr(_owner(agent, k), k.split(".")[-1]) for k in names}
    try:
        for k, v in zip(names, ps):
            owner, attr = _owner(agent, k), k.split(".")[-1]
            owner._parameters[attr] = v
        return replay_loss(agent, obs, actions, rets, s, fixed_advantage)
    finally:
        for k, v in saved.items():
            _owner(agent, k)._parameters[k.split(".")[-1]] = v


def _owner(agent, name):
    mod = agent
    for part in name.split(".")[:-1]:
        mod = getattr(mod, part)
    return mod


def peak_rss_mb():
    """The process's peak resident memory, MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def print_result(out, dev):
    """Prints the result `out` as one JSON line, with the device's peak memory and name on CUDA."""
    if dev.type == "cuda":
        out["device_memory_mb"] = round(torch.cuda.max_memory_allocated() / 1e6, 1)
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out))


def add_run_options(ap, check_help):
    """The options every PyTorch bench takes: --threads, --device, --seed and --check."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help=check_help)


def parse_run_options(ap, argv, check):
    """Parses `argv` (None: the command line) and sets torch's threads; with --check, runs
    `check(seed)` and exits with its verdict."""
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.check:
        sys.exit(0 if check(args.seed) else 1)
    return args


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), default="maze-agent")
    ap.add_argument("--model", choices=MODELS, default="modul")
    ap.add_argument("--fan-out", action="store_true", help="one modulated rate per neuron")
    ap.add_argument("--batch", type=int, default=None, help="episodes per update [30]")
    ap.add_argument("--steps", type=int, default=None, help="steps per episode [the task's]")
    ap.add_argument("--neurons", type=int, default=None, help="[the task's]")
    ap.add_argument("--episodes", type=int, default=5, help="timed updates (after 2 warm-up)")
    ap.add_argument("--max-grad-norm", type=float, default=0.0,
                    help="clip the global gradient norm (0: off, like `plasticity bench`)")
    add_run_options(ap, "check the equations and gradients on small sizes, exit")
    args = parse_run_options(ap, argv, check)
    task = TASKS[args.task]
    s = SETTINGS
    batch = args.batch or task["batch"]
    steps = args.steps or task["steps"]
    n = args.neurons or task["neurons"][0 if args.model == "plastic" else 1]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = torch.device(args.device)
    env_cls = ENVS[args.task]
    agent = Agent(args.model, n, env_cls.obs_size, env_cls.actions, args.fan_out, s["clip"],
                  s["eta"], s["alpha_std"]).to(dev)
    opt = torch.optim.Adam(agent.parameters(), lr=s["lr"], eps=s["adam_eps"])
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    total, parts, mean_reward = [], [[], [], []], []
    for k in range(args.episodes + 2):
        t0 = time.time()
        env = env_cls(batch, steps, rng)
        opt.zero_grad()
        loss = rollout_loss(agent, env, steps, batch, s, dev)
        sync()
        t1 = time.time()
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
        sync()
        t2 = time.time()
        opt.step()
        sync()
        t3 = time.time()
        if k >= 2:
            total.append((t3 - t0) * 1e3)
            for part, (a, b) in zip(parts, [(t0, t1), (t1, t2), (t2, t3)]):
                part.append((b - a) * 1e3)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    out = {
        "workload": args.task,
        "side": "pytorch",
        "model": args.model,
        "fan_out": args.fan_out,
        "ms_per_update": round(med(total), 2),
        "min_ms": round(min(total), 2),
        "max_ms": round(max(total), 2),
        "forward_ms": round(med(parts[0]), 2),
        "backward_ms": round(med(parts[1]), 2),
        "optimizer_ms": round(med(parts[2]), 2),
        "peak_rss_mb": peak_rss_mb(),
        "threads": args.threads,
        "device": args.device,
        "batch": batch,
        "neurons": n,
        "steps": steps,
        "episodes_timed": args.episodes,
        "max_grad_norm": args.max_grad_norm or None,
        "torch": torch.__version__,
    }
    print_result(out, dev)


if __name__ == "__main__":
    main()
