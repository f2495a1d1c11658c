"""PyTorch reference of the benchmark workloads, written the way the papers' code works: plain
tensor ops, autograd through every step (it stores every step's trace), Adam. From the
equations (ICML 2018 eq. 1-3; ICLR 2019 for the batched, clipped maze setting):

    y_t      = tanh(y_{t-1} (w + alpha * Hebb_t) + x_t)        (clamped: y_t = x_t where x_t != 0)
    Hebb_t+1 = (1 - eta) Hebb_t + eta outer(y_{t-1}, y_t)      (Oja: Hebb + eta y_t (y_{t-1} - Hebb y_t))
    Hebb     = clamp(Hebb, -c, c)                               (maze)

Workloads (the same as `plasticity bench <workload>`):
    pattern     N=1001 T=106 B=1, the pattern task's episodes, decaying Hebb
    oja         pattern with Oja's rule
    images      N=1025 T=201 B=1, clamped input, loss at the last step (synthetic inputs)
    maze        N=100 T=200 B=30, trace clipped to [-1, 1], loss at every step (synthetic inputs)
    maze-agent  the maze agent's whole A2C update (bench/pytorch_agent.py; --model, --fan-out)
    cue-reward  the cue-reward agent's whole A2C update (bench/pytorch_agent.py)

A batch of B episodes runs together (`Hebb: [B, N, N]`, `torch.bmm`), in chunks of `--chunk`
episodes whose gradients add up before the Adam step. `--chunk 0` (the default) runs the whole
batch at once when the estimated autograd memory fits in the free memory, else the largest
divisor of B that fits; `--per-episode` (`--chunk 1`) is the ICML 2018 code's way (one episode
at a time, memory of one episode). `--check` compares the two on small sizes (loss and every
gradient, float64) and exits.

Prints one JSON object: workload, ms_per_update (ms per training step, median after 2 warm-up
steps), peak memory, the chunk used.

    bench/setup-pytorch.sh        # once: bench/.venv with torch from PyPI
    bench/.venv/bin/python bench/pytorch_reference.py --workload images --episodes 10
    bench/.venv/bin/python bench/pytorch_reference.py --workload pattern --batch 16 --per-episode
    bench/.venv/bin/python bench/pytorch_reference.py --check
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_agent  # noqa: E402
from pytorch_pattern import episode as pattern_episode  # noqa: E402

WORKLOADS = {
    # name: (neurons, steps, batch, rule, clip, clamped, density, loss on all steps)
    "pattern": (1001, 106, 1, "hebb", None, False, None, False),
    "oja": (1001, 106, 1, "oja", None, False, None, False),
    "images": (1025, 201, 1, "hebb", None, True, 0.9, False),
    "maze": (100, 200, 30, "hebb", 1.0, False, 0.2, True),
}
AGENT_WORKLOADS = ("maze-agent", "cue-reward")

# Autograd keeps about this many [N, N] float32 tensors per step and episode (the trace, the
# effective weights w + alpha * Hebb, the outer product, temporaries). Measured peak RSS at
# N = 1001, T = 106 (pattern, 1 thread): 3.4 GB at B = 1, 5.9 GB at B = 2 run together, i.e.
# ~2.5 GB (~6 per step) per episode; 7.5 leaves a margin. Used only to choose the chunk.
SAVED_PER_STEP = 7.5


def batch_inputs(workload, rng, n, steps, batch, density):
    """x: [T, B, N], target: [B, N or bits], bits (neurons the loss looks at)."""
    if workload in ("pattern", "oja"):
        xs, ts = zip(*(pattern_episode(rng, n - 1, 5, 2, 6, 4, 6, 0.5, 20.0) for _ in range(batch)))
        return torch.stack(xs, 1), torch.stack(ts, 0), n - 1
    x = np.where(rng.random((steps, batch, n)) < density,
                 np.where(rng.random((steps, batch, n)) < 0.5, 1.0, -1.0), 0.0)
    target = np.where(rng.random((batch, n)) < 0.5, 1.0, -1.0)
    return (torch.from_numpy(x.astype(np.float32)), torch.from_numpy(target.astype(np.float32)), n)


def episodes_loss(params, x, target, bits, total, rule, clip, clamped, all_steps):
    """Forward of the episodes of x: [T, B, N] together (Hebb: [B, N, N], batched products);
    returns their loss divided by `total` (the whole batch's size)."""
    w, alpha, eta = params
    batch, n = x.shape[1], x.shape[2]
    y = torch.zeros(batch, n, dtype=x.dtype, device=x.device)
    hebb = torch.zeros(batch, n, n, dtype=x.dtype, device=x.device)
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
            loss = loss + (y - target).pow(2).sum()
    if not all_steps:
        loss = (y[:, :bits] - target).pow(2).sum()
    return loss / total


def step_grads(params, x, target, bits, chunk, cfg, loss_fn=episodes_loss):
    """Loss and gradients of one training step of the batch x: [T, B, N], `chunk` episodes at
    a time (the gradients of the chunks add up in .grad); `loss_fn` is `episodes_loss` or its
    `torch.compile`d form."""
    batch = x.shape[1]
    total = 0.0
    for s in range(0, batch, chunk):
        loss = loss_fn(params, x[:, s:s + chunk], target[s:s + chunk], bits, batch, *cfg)
        loss.backward()
        total += float(loss.detach())
    return total


def free_bytes(dev):
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_chunk(batch, n, steps, dev):
    """The whole batch if its estimated autograd memory fits in 80% of the free memory, else
    the largest divisor of the batch that does (at least 1)."""
    free = free_bytes(dev)
    if free is None:
        return batch
    per_episode = SAVED_PER_STEP * steps * n * n * 4
    for c in range(batch, 0, -1):
        if batch % c == 0 and c * per_episode <= 0.8 * free:
            return c
    return 1


def check(seed=0):
    """Batched (the whole batch at once) against one episode at a time on small sizes, float64:
    the same loss and gradients for every workload's setting."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for name, (_, steps, _, rule, clip, clamped, density, all_steps) in WORKLOADS.items():
        n, batch = 17, 4
        steps = 106 if name in ("pattern", "oja") else 24
        x, target, bits = batch_inputs(name, rng, n, steps, batch, density)
        if name in ("pattern", "oja"):
            x = x / 20.0  # the pattern task's input scale saturates tanh at this small N
        x, target = x.double(), target.double()
        clip_c = 0.05 if clip is not None else None  # small so that the clip binds
        params = [(0.3 * torch.randn(n, n, dtype=torch.float64)).requires_grad_(),
                  (0.3 * torch.randn(n, n, dtype=torch.float64)).requires_grad_(),
                  torch.full((1,), 0.1, dtype=torch.float64).requires_grad_()]
        cfg = (rule, clip_c, clamped, all_steps)
        results = []
        for chunk in (batch, 1):
            for p in params:
                p.grad = None
            loss = step_grads(params, x, target, bits, chunk, cfg)
            results.append((loss, [p.grad.clone() for p in params]))
        (l_b, g_b), (l_e, g_e) = results
        rel = [abs(l_b - l_e) / max(abs(l_e), 1e-30)]
        rel += [float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(g_b, g_e)]
        worst = max(worst, max(rel))
        print(f"check {name}: N={n} T={steps} B={batch} loss {l_b:.6g} (batched) vs {l_e:.6g} "
              f"(per episode); largest relative difference loss/w/alpha/eta: "
              + " ".join(f"{r:.1e}" for r in rel))
    ok = worst < 1e-10
    print(f"check: {'ok' if ok else 'FAILED'} (worst {worst:.1e}, tolerance 1e-10)")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=sorted(WORKLOADS) + list(AGENT_WORKLOADS),
                    default="pattern")
    ap.add_argument("--episodes", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--batch", type=int, default=None, help="episodes per step [workload's]")
    ap.add_argument("--chunk", type=int, default=0,
                    help="episodes run together (0: the whole batch if it fits in memory)")
    ap.add_argument("--per-episode", action="store_true",
                    help="one episode at a time (the ICML 2018 code; --chunk 1)")
    ap.add_argument("--neurons", type=int, default=None,
                    help="network size N [the workload's] (pattern, oja: N - 1 bits)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the episodes' forward; the compile is in the first "
                         "(warm-up) step, reported as first_step_ms")
    ap.add_argument("--model", default=None,
                    help="maze-agent, cue-reward: rnn | plastic | modplast | modul [modul]")
    ap.add_argument("--fan-out", action="store_true",
                    help="maze-agent, cue-reward: one modulated rate per neuron")
    pytorch_agent.add_run_options(
        ap, "compare batched and per-episode loss and gradients on small sizes, exit")
    args = pytorch_agent.parse_run_options(ap, None, check)
    if args.workload in AGENT_WORKLOADS:
        pytorch_agent.main([
            "--task", args.workload, "--model", args.model or "modul",
            "--episodes", str(args.episodes), "--threads", str(args.threads),
            "--device", args.device, "--seed", str(args.seed),
        ] + (["--batch", str(args.batch)] if args.batch else [])
          + (["--fan-out"] if args.fan_out else []))
        return
    n, steps, batch, rule, clip, clamped, density, all_steps = WORKLOADS[args.workload]
    n = args.neurons or n
    batch = args.batch or batch
    loss_fn = torch.compile(episodes_loss) if args.compile else episodes_loss
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    chunk = 1 if args.per_episode else (args.chunk or auto_chunk(batch, n, steps, dev))
    if batch % chunk != 0:
        sys.exit(f"--chunk {chunk} must divide the batch {batch}")
    rng = np.random.default_rng(args.seed)
    w = (0.01 * torch.randn(n, n, device=dev)).requires_grad_()
    alpha = (0.01 * torch.randn(n, n, device=dev)).requires_grad_()
    eta = (0.01 * torch.ones(1, device=dev)).requires_grad_()
    params = [w, alpha, eta]
    opt = torch.optim.Adam(params, lr=1e-4)
    cfg = (rule, clip, clamped, all_steps)
    times, first_ms = [], None
    for k in range(args.episodes + 2):
        t0 = time.time()
        x, target, bits = batch_inputs(args.workload, rng, n, steps, batch, density)
        x, target = x.to(dev), target.to(dev)
        opt.zero_grad()
        step_grads(params, x, target, bits, chunk, cfg, loss_fn)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if k == 0:
            first_ms = round((time.time() - t0) * 1e3, 1)
        if k >= 2:
            times.append((time.time() - t0) * 1e3)
    times.sort()
    out = {
        "workload": args.workload,
        "side": "pytorch",
        "ms_per_update": round(times[len(times) // 2], 2),
        "peak_rss_mb": pytorch_agent.peak_rss_mb(),
        "threads": args.threads,
        "device": args.device,
        "batch": batch,
        "chunk": chunk,
        "compiled": args.compile,
        "first_step_ms": first_ms,
        "neurons": n,
        "steps": steps,
        "torch": torch.__version__,
    }
    pytorch_agent.print_result(out, dev)


if __name__ == "__main__":
    main()
