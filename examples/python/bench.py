"""One training step (forward through the episode, backward, Adam) of a PlasticRNN model against
the same model in plain PyTorch ops (plasticity.reference: the papers' formulation, one step at
a time with autograd through every step), on the CPU with the same number of threads.

Shapes (those of `plasticity bench`, see BENCHMARKS.md):
    pattern     N=1001 T=106 B=1, decaying Hebb, loss at the last step (the pattern task)
    maze        N=100 T=200 B=30, Hebb clipped to [-1, 1], loss at every step
    maze-modul  maze with retroactive neuromodulation and fan-out (ICLR 2019)

Each (shape, implementation) runs in its own process: the time is the median of the timed
steps after 2 warm-up steps. "step MB" is the memory a step needs beyond what the process holds
between steps (parameters, Adam's state, allocator and thread pools, torch itself): the peak
resident set during the timed steps (Linux: the peak is reset after the warm-up through
/proc/self/clear_refs) minus the resident set before them. "peak RSS" is the whole process's
peak (importing torch alone takes a few hundred MB).

    python examples/python/bench.py --threads 2 --steps 5
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

SHAPES = {
    # name: (neurons, steps, batch, PlasticRNN options, loss at every step)
    "pattern": (1001, 106, 1, dict(), False),
    "maze": (100, 200, 30, dict(clip=1.0), True),
    "maze-modul": (100, 200, 30, dict(clip=1.0, modulation="retroactive", fan_out=True), True),
}


def status_mb(field):
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Resets the peak resident set (VmHWM) to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_one(shape, impl, threads, steps):
    """Times `steps` training steps of one implementation; returns a dict."""
    import torch

    from plasticity import reference
    from plasticity.torch import PlasticRNN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, t, b, options, every_step = SHAPES[shape]
    net = PlasticRNN(n, **options)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(1)
    if shape == "pattern":  # the pattern task's inputs: +-20 patterns, gaps, a bias neuron
        x = 20.0 * torch.sign(torch.randn(b, t, n, generator=g))
        x[:, 6::10] = 0.0
        x[:, :, -1] = 20.0
    else:  # synthetic inputs, 20% non-zero
        x = torch.randn(b, t, n, generator=g) * (torch.rand(b, t, n, generator=g) < 0.2)
    target = torch.sign(torch.randn(b, t, n, generator=g))
    params = dict(net.named_parameters())

    def step():
        opt.zero_grad()
        if impl == "plasticity":
            ys, _ = net(x)
        else:
            ys, _, _ = reference.plastic_rnn(
                x, torch.zeros(b, n), net.w, net.alpha, net.eta, m=params.get("m"),
                m_bias=params.get("m_bias"), fan_w=params.get("fan_w"),
                fan_b=params.get("fan_b"), modulation=net.modulation, clip=net.clip)
        out, want = (ys, target) if every_step else (ys[:, -1], target[:, -1])
        loss = (out - want).pow(2).sum()
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: Adam's state, thread pools, allocator caches
        step()
    before = status_mb("VmRSS")
    reset_peak()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return dict(shape=shape, impl=impl, neurons=n, steps_per_episode=t, batch=b,
                ms_per_step=times[len(times) // 2], step_mb=status_mb("VmHWM") - before,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                threads=threads, load_average=os.getloadavg()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after 2 warm-up steps")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--one", nargs=2, metavar=("SHAPE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.threads, args.steps)))
        return
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    print(f"| shape | N | T | B | PlasticRNN ms/step | PyTorch ms/step | speed-up "
          f"| PlasticRNN step MB | PyTorch step MB | memory ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        r = {}
        for impl in ("plasticity", "pytorch"):
            out = subprocess.run([sys.executable, __file__, "--one", shape, impl, "--threads",
                                  str(args.threads), "--steps", str(args.steps)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            r[impl] = json.loads(out.strip().splitlines()[-1])
            print(f"# {json.dumps(r[impl])}", file=sys.stderr)
        p, q = r["plasticity"], r["pytorch"]
        print(f"| {shape} | {p['neurons']} | {p['steps_per_episode']} | {p['batch']} "
              f"| {p['ms_per_step']:.1f} | {q['ms_per_step']:.1f} "
              f"| {q['ms_per_step'] / p['ms_per_step']:.1f}x | {p['step_mb']:.0f} "
              f"| {q['step_mb']:.0f} | 1/{q['step_mb'] / max(p['step_mb'], 1.0):.0f} "
              f"| {p['peak_rss_mb']:.0f} vs {q['peak_rss_mb']:.0f} |")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
