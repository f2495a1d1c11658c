"""PyTorch reference of the pattern task, written the way the papers' code works (batch 1,
plain tensor ops, autograd through every step, Adam), from the ICML 2018 equations:

    y_t    = tanh(y_{t-1} (w + alpha * Hebb_t) + x_t)
    Hebb_t+1 = (1 - eta) Hebb_t + eta outer(y_{t-1}, y_t)

Used to compare speed, memory and learning curves with `plasticity pattern`:

    bench/setup-pytorch.sh                       # once: venv with torch from PyPI
    bench/.venv/bin/python bench/pytorch_pattern.py --episodes 300 --seed 1 --out /tmp/torch-s1.csv
"""
import argparse
import resource
import time

import numpy as np
import torch


def episode(rng, bits, patterns, cycles, present, gap, test, degraded, scale):
    steps = cycles * patterns * (present + gap) + test
    x = np.zeros((steps, bits + 1), dtype=np.float32)
    pats = []
    for _ in range(patterns):
        p = np.array([1.0] * (bits // 2) + [-1.0] * (bits // 2), dtype=np.float32)
        rng.shuffle(p)
        pats.append(p)
    t = 0
    for _ in range(cycles):
        for k in rng.permutation(patterns):
            for _ in range(present):
                x[t, :bits] = pats[k]
                t += 1
            t += gap
    target = pats[rng.integers(patterns)]
    cue = target.copy()
    cue[rng.choice(bits, int(round(bits * degraded)), replace=False)] = 0.0
    for _ in range(test):
        x[t, :bits] = cue
        t += 1
    x[:, bits] = 1.0  # bias neuron
    return torch.from_numpy(x * scale), torch.from_numpy(target)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bits", type=int, default=1000)
    ap.add_argument("--patterns", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--present", type=int, default=6)
    ap.add_argument("--gap", type=int, default=4)
    ap.add_argument("--test", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--out", default=None, help="metrics CSV (episode,loss,error,seconds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.bits + 1
    w = (0.01 * torch.randn(n, n)).requires_grad_()
    alpha = (0.01 * torch.randn(n, n)).requires_grad_()
    eta = (0.01 * torch.ones(1)).requires_grad_()
    opt = torch.optim.Adam([w, alpha, eta], lr=args.lr)
    rows, times = [], []
    start = time.time()
    for ep in range(1, args.episodes + 1):
        t0 = time.time()
        x, target = episode(rng, args.bits, args.patterns, args.cycles, args.present, args.gap,
                            args.test, 0.5, 20.0)
        opt.zero_grad()
        y = torch.zeros(1, n)
        hebb = torch.zeros(n, n)
        for t in range(x.shape[0]):
            y_new = torch.tanh(y.mm(w + alpha * hebb) + x[t:t + 1])
            hebb = (1 - eta) * hebb + eta * torch.mm(y.t(), y_new)
            y = y_new
        loss = (y[0, :args.bits] - target).pow(2).sum()
        loss.backward()
        opt.step()
        times.append((time.time() - t0) * 1e3)
        err = float((torch.sign(y[0, :args.bits].detach()) != torch.sign(target)).float().mean())
        rows.append(f"{ep},{loss.item():.6f},{err:.6f},{time.time() - start:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("episode,loss,error,seconds\n" + "\n".join(rows) + "\n")
    timed = sorted(times[2:]) or times
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f'{{"workload": "pattern", "ms_per_update": {timed[len(timed) // 2]:.1f}, '
          f'"peak_rss_mb": {rss:.0f}, "threads": {args.threads}, "episodes": {args.episodes}}}')


if __name__ == "__main__":
    main()
