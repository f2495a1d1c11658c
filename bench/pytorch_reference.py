"""PyTorch reference of the benchmark workloads, written the way the papers' code works: plain
tensor ops, autograd through every step (it stores every step's trace), Adam. From the
equations (ICML 2018 eq. 1-3; ICLR 2019 for the batched, clipped maze setting):

    y_t      = tanh(y_{t-1} (w + alpha * Hebb_t) + x_t)        (clamped: y_t = x_t where x_t != 0)
    Hebb_t+1 = (1 - eta) Hebb_t + eta outer(y_{t-1}, y_t)      (Oja: Hebb + eta y_t (y_{t-1} - Hebb y_t))
    Hebb     = clamp(Hebb, -c, c)                               (maze)

Workloads (the same as `plasticity bench <workload>`):
    pattern  N=1001 T=106 B=1, the pattern task's episodes, decaying Hebb
    oja      pattern with Oja's rule
    images   N=1025 T=201 B=1, clamped input, loss at the last step (synthetic inputs)
    maze     N=100 T=200 B=30, trace clipped to [-1, 1], loss at every step (synthetic inputs)

Prints one JSON object: workload, ms_per_episode (median after 2 warm-up steps), peak memory.

    bench/setup-pytorch.sh        # once: bench/.venv with torch from PyPI
    bench/.venv/bin/python bench/pytorch_reference.py --workload images --episodes 10
"""
import argparse
import json
import resource
import time

import numpy as np
import torch

from pytorch_pattern import episode as pattern_episode

WORKLOADS = {
    # name: (neurons, steps, batch, rule, clip, clamped, density, loss on all steps)
    "pattern": (1001, 106, 1, "hebb", None, False, None, False),
    "oja": (1001, 106, 1, "oja", None, False, None, False),
    "images": (1025, 201, 1, "hebb", None, True, 0.9, False),
    "maze": (100, 200, 30, "hebb", 1.0, False, 0.2, True),
}


def batch_inputs(workload, rng, n, steps, batch, density):
    """x: [T, B, N], target: [B, N or bits], bits (neurons the loss looks at)."""
    if workload in ("pattern", "oja"):
        xs, ts = zip(*(pattern_episode(rng, n - 1, 5, 2, 6, 4, 6, 0.5, 20.0) for _ in range(batch)))
        return torch.stack(xs, 1), torch.stack(ts, 0), n - 1
    x = np.where(rng.random((steps, batch, n)) < density,
                 np.where(rng.random((steps, batch, n)) < 0.5, 1.0, -1.0), 0.0)
    target = np.where(rng.random((batch, n)) < 0.5, 1.0, -1.0)
    return (torch.from_numpy(x.astype(np.float32)), torch.from_numpy(target.astype(np.float32)), n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="pattern")
    ap.add_argument("--episodes", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--batch", type=int, default=None, help="episodes per step [workload's]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, steps, batch, rule, clip, clamped, density, all_steps = WORKLOADS[args.workload]
    batch = args.batch or batch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    w = (0.01 * torch.randn(n, n, device=dev)).requires_grad_()
    alpha = (0.01 * torch.randn(n, n, device=dev)).requires_grad_()
    eta = (0.01 * torch.ones(1, device=dev)).requires_grad_()
    opt = torch.optim.Adam([w, alpha, eta], lr=1e-4)
    times = []

    def run(x, target, bits, batch):
        """Forward and backward of `batch` episodes run together (x: [T, B, N])."""
        y = torch.zeros(batch, n, device=dev)
        hebb = torch.zeros(batch, n, n, device=dev)
        loss = 0.0
        for t in range(x.shape[0]):
            pre = torch.bmm(y.unsqueeze(1), w + alpha * hebb).squeeze(1)
            if clamped:
                y_new = torch.where(x[t] != 0, x[t], torch.tanh(pre))
            else:
                y_new = torch.tanh(pre + x[t])
            if rule == "hebb":
                hebb = (1 - eta) * hebb + eta * torch.bmm(y.unsqueeze(2), y_new.unsqueeze(1))
            else:
                post = y_new.unsqueeze(1)
                hebb = hebb + eta * post * (y.unsqueeze(2) - hebb * post)
            if clip is not None:
                hebb = torch.clamp(hebb, -clip, clip)
            y = y_new
            if all_steps:
                loss = loss + (y - target).pow(2).sum() / batch
        if not all_steps:
            loss = (y[:, :bits] - target).pow(2).sum() / batch
        loss.backward()

    for k in range(args.episodes + 2):
        t0 = time.time()
        x, target, bits = batch_inputs(args.workload, rng, n, steps, batch, density)
        x, target = x.to(dev), target.to(dev)
        opt.zero_grad()
        if args.workload == "maze":
            # The Backpropamine maze code runs its batch of episodes together.
            run(x, target, bits, batch)
        else:
            # The ICML 2018 code runs one episode at a time: a batch of B is B episodes whose
            # gradients add up before the Adam step (memory stays one episode's).
            for e in range(batch):
                run(x[:, e:e + 1] * 1.0, target[e:e + 1], bits, 1)
            for p in (w, alpha, eta):
                p.grad /= batch
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if k >= 2:
            times.append((time.time() - t0) * 1e3)
    times.sort()
    out = {
        "workload": args.workload,
        "side": "pytorch",
        "ms_per_episode": round(times[len(times) // 2], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "threads": args.threads,
        "device": args.device,
        "batch": batch,
        "neurons": n,
        "steps": steps,
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        out["device_memory_mb"] = round(torch.cuda.max_memory_allocated() / 1e6, 1)
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
