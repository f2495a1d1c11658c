"""One training step (forward through the episode, backward, Adam) of a PlasticRNN model against
the same model in plain PyTorch ops (plasticity.reference: the papers' formulation, one step at
a time with autograd through every step), on the CPU with the same number of threads.

Shapes (those of `plasticity bench`, see BENCHMARKS.md):
    pattern     N=1001 T=106 B=1, decaying Hebb, loss at the last step (the pattern task)
    maze        N=100 T=200 B=30, Hebb clipped to [-1, 1], loss at every step
    maze-modul  maze with retroactive neuromodulation and fan-out (ICLR 2019)

Each (shape, implementation) runs in its own process, `--rounds` times, the two
implementations alternating: the time is the median of all the timed steps (2 warm-up steps
per process) of all the rounds; on a shared machine, compare only numbers of one run. "step MB" is the memory training takes beyond the model and
torch itself: the process's peak resident set over all the steps minus its resident set just
before the first one (it includes the gradients and Adam's state, the same on both sides).
"peak RSS" is the whole process's peak (importing torch alone takes a few hundred MB).

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

    before = status_mb("VmRSS")
    times = []
    for k in range(steps + 2):  # 2 warm-up steps
        t0 = time.perf_counter()
        step()
        if k >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return dict(shape=shape, impl=impl, neurons=n, steps_per_episode=t, batch=b,
                ms_per_step=times[len(times) // 2], times_ms=times, step_mb=status_mb("VmHWM") - before,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                threads=threads, load_average=os.getloadavg()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after 2 warm-up steps")
    ap.add_argument("--rounds", type=int, default=3, help="processes per implementation")
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
        runs = {"plasticity": [], "pytorch": []}
        for round_ in range(args.rounds):
            order = ("plasticity", "pytorch") if round_ % 2 == 0 else ("pytorch", "plasticity")
            for impl in order:
                out = subprocess.run([sys.executable, __file__, "--one", shape, impl,
                                      "--threads", str(args.threads), "--steps", str(args.steps)],
                                     env=env, check=True, capture_output=True, text=True).stdout
                runs[impl].append(json.loads(out.strip().splitlines()[-1]))
                print(f"# {json.dumps(runs[impl][-1])}", file=sys.stderr)

        def median(values):
            values = sorted(values)
            return values[len(values) // 2]

        p, q = ({"ms": median([t for r in runs[i] for t in r["times_ms"]]),
                 "mb": median([r["step_mb"] for r in runs[i]]),
                 "rss": median([r["peak_rss_mb"] for r in runs[i]])}
                for i in ("plasticity", "pytorch"))
        n, t, b = (runs["plasticity"][0][k] for k in ("neurons", "steps_per_episode", "batch"))
        print(f"| {shape} | {n} | {t} | {b} | {p['ms']:.1f} | {q['ms']:.1f} "
              f"| {q['ms'] / p['ms']:.1f}x | {p['mb']:.0f} | {q['mb']:.0f} "
              f"| 1/{q['mb'] / max(p['mb'], 1.0):.0f} | {p['rss']:.0f} vs {q['rss']:.0f} |",
              flush=True)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
