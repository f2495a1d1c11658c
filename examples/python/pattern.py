"""Pattern memorisation and completion (Miconi et al., ICML 2018, section 4.1) on PlasticRNN.

Each episode shows 5 random patterns of 1000 bits (half +1, half -1) twice in shuffled order,
6 steps each with 4 steps of zero input after each, then one of them with half its bits
zeroed for 6 steps (106 steps); inputs are scaled by 20 and a bias neuron (N = 1001) always
receives 20. The loss is the squared error of the last step's activity against the full pattern;
the error is the fraction of bits whose sign is wrong. One episode per update, Adam 3e-4: the
setting of `plasticity pattern` (docs/experiments/pattern.md).

    python examples/python/pattern.py --updates 300 --seed 1
"""
import argparse

import numpy as np
import torch

from plasticity.torch import PlasticRNN

BITS, PATTERNS, CYCLES, PRESENT, GAP, TEST, SCALE = 1000, 5, 2, 6, 4, 6, 20.0


def episode(rng):
    """x: [1, T, BITS + 1] (batch first) and the target pattern [BITS]."""
    patterns = [rng.permutation(np.repeat([1.0, -1.0], BITS // 2)) for _ in range(PATTERNS)]
    steps = [p for _ in range(CYCLES) for k in rng.permutation(PATTERNS)
             for p in [patterns[k]] * PRESENT + [np.zeros(BITS)] * GAP]
    target = patterns[rng.integers(PATTERNS)]
    cue = target * (rng.permutation(BITS) >= BITS // 2)  # half the bits set to 0
    x = np.stack(steps + [cue] * TEST)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1) * SCALE  # the bias neuron
    return torch.tensor(x[None], dtype=torch.float32), torch.tensor(target, dtype=torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=300, help="optimiser steps (one episode each)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = PlasticRNN(BITS + 1, rule="hebb", alpha="per_connection")  # w, alpha ~ 0.01 N(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    errors = []
    for update in range(1, args.updates + 1):
        x, target = episode(rng)
        y, _ = net(x)
        out = y[0, -1, :BITS]  # the last step's activity of the pattern neurons
        loss = (out - target).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append((torch.sign(out.detach()) != target).float().mean().item())
        if update % 50 == 0:
            print(f"update {update}: loss {loss.item():.2f}, "
                  f"error over the last 50 episodes {100 * np.mean(errors[-50:]):.2f}%")
    print(f"mean error, episodes {max(1, args.updates - 49)}-{args.updates}: "
          f"{100 * np.mean(errors[-50:]):.2f}%")


if __name__ == "__main__":
    main()
