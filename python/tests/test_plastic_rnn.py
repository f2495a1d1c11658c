"""PlasticRNN (Rust engine) against the same equations in plain torch ops
(plasticity.reference), finite differences, carried state, state_dict, and bad inputs.

Tolerance of the float32 engine against the float64 reference: |got - want| <= 1e-4 |want| +
1e-5 max|want| per tensor (float32 rounding through a few steps; the float64 engine agrees to
1e-12).
"""

import io
import itertools

import numpy as np
import pytest
import torch

from plasticity import _engine, reference
from plasticity.torch import PlasticRNN, PlasticState, plastic_rnn_episode

N, B, T = 6, 2, 5

# Every trace rule and modulation (with and without fan-out): (rule, modulation, fan_out).
KINDS = [("hebb", None, False), ("oja", None, False), ("hebb", "simple", False),
         ("hebb", "simple", True), ("hebb", "retroactive", False),
         ("hebb", "retroactive", True)]
CONFIGS = [dict(rule=r, modulation=m, fan_out=f, alpha=a, clip=c, input_mode=i)
           for (r, m, f), a, c, i in itertools.product(
               KINDS, ("per_connection", "per_neuron", "scalar"), (None, 0.1),
               ("additive", "clamped"))]


def config_id(c):
    return "-".join(str(c[k]) for k in ("rule", "modulation", "fan_out", "alpha", "clip",
                                        "input_mode"))


def make_net(seed=0, n=N, **config):
    """A layer with parameters large enough that plasticity and the clip matter."""
    torch.manual_seed(seed)
    net = PlasticRNN(n, init_std=0.5, eta_init=0.3, **config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in ("m_bias", "fan_b"):
                p.uniform_(-0.5, 0.5)
    return net


def inputs(config, b=B, t=T, n=N, seed=1, dtype=torch.float32):
    """x: [B, T, N] (a third of it zero in clamped mode) and a random initial state."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, n, generator=g, dtype=dtype)
    if config.get("input_mode") == "clamped":
        x = x * (torch.rand(b, t, n, generator=g, dtype=dtype) > 0.33)
    y0 = torch.rand(b, n, generator=g, dtype=dtype) * 2 - 1
    hebb0 = (torch.rand(b, n, n, generator=g, dtype=dtype) * 2 - 1) * 0.3
    elig0 = None
    if config.get("modulation") == "retroactive":
        elig0 = (torch.rand(b, n, n, generator=g, dtype=dtype) * 2 - 1) * 0.3
    return x, PlasticState(y0, hebb0, elig0)


def reference_run(net, x, state):
    """The reference on float64 copies of the layer's parameters and the inputs."""
    p = {k: v.detach().double().requires_grad_() for k, v in net.named_parameters()}
    eta = p.get("eta", None if net.eta is None else net.eta.double())
    s = [None if t is None else t.detach().double().requires_grad_() for t in state]
    xd = x.detach().double().requires_grad_()
    ys, hebb, elig = reference.plastic_rnn(
        xd, s[0], p["w"], p["alpha"], eta, hebb0=s[1], elig0=s[2], m=p.get("m"),
        m_bias=p.get("m_bias"), fan_w=p.get("fan_w"), fan_b=p.get("fan_b"), rule=net.rule,
        modulation=net.modulation, clip=net.clip, input_mode=net.input_mode)
    return (ys, hebb, elig), p, s, xd


def loss_of(ys, hebb, elig, seed=2):
    """A loss that looks at every output: random weights on every step's y, Hebb and E."""
    g = torch.Generator().manual_seed(seed)
    loss = (torch.randn(ys.shape, generator=g).to(ys.dtype) * ys).sum()
    loss = loss + (torch.randn(hebb.shape, generator=g).to(hebb.dtype) * hebb).sum()
    if elig is not None:
        loss = loss + (torch.randn(elig.shape, generator=g).to(elig.dtype) * elig).sum()
    return loss


def assert_close(name, got, want):
    want = want.detach()
    got = got.detach().double()
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    tol = 1e-4 * float(want.abs().max()) + 1e-5 * scale if want.numel() else 0.0
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_forward_and_every_gradient_match_the_reference(config):
    net = make_net(**config)
    x, state = inputs(config)
    state = PlasticState(*(None if t is None else t.clone().requires_grad_() for t in state))
    x = x.clone().requires_grad_()
    ys, out = net(x, state)
    (ys_r, hebb_r, elig_r), p, s, xd = reference_run(net, x, state)
    assert_close("ys", ys, ys_r)
    assert_close("hebb", out.hebb, hebb_r)
    assert_close("y", out.y, ys_r[:, -1])
    if config["modulation"] == "retroactive":
        assert_close("elig", out.elig, elig_r)
    else:
        assert out.elig is None
    loss_of(ys, out.hebb, out.elig).backward()
    loss_of(ys_r, hebb_r, elig_r).backward()
    names = [k for k, _ in net.named_parameters()]
    expected = {"w", "alpha", "eta", "m", "m_bias", "fan_w", "fan_b"}
    assert set(names) <= expected
    for name, param in net.named_parameters():
        assert param.grad is not None, f"{name}: no gradient"
        assert_close(f"d/d{name}", param.grad, p[name].grad)
    assert_close("d/dx", x.grad, xd.grad)
    for name, got, want in zip(("y0", "hebb0", "elig0"), state, s):
        if got is not None:
            assert_close(f"d/d{name}", got.grad, want.grad)


GRADCHECK_CONFIGS = [
    dict(rule="hebb"),
    dict(rule="oja", alpha_shape="per_neuron", clip=0.2),
    dict(modulation="simple", fan_out=True, alpha_shape="scalar"),
    dict(modulation="retroactive", fan_out=True, clip=0.2, input_mode="clamped"),
]


@pytest.mark.parametrize("config", GRADCHECK_CONFIGS,
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck_finite_differences(config):
    """torch.autograd.gradcheck (central differences, float64 engine) on N=4, B=2, T=4."""
    n, b, t = 4, 2, 4
    g = torch.Generator().manual_seed(3)

    def rand(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
                ).requires_grad_()

    alpha_dims = {"per_connection": (n, n), "per_neuron": (n,), "scalar": (1,)}[
        config.get("alpha_shape", "per_connection")]
    x = rand(t, b, n)
    if config.get("input_mode") == "clamped":
        # The output jumps where x crosses 0: no finite difference in x there.
        x = x.detach() * (torch.rand(t, b, n, generator=g, dtype=torch.float64) > 0.3)
    modulation = config.get("modulation")
    args = dict(hebb0=rand(b, n, n, scale=0.3), w=rand(n, n), alpha=rand(*alpha_dims),
                eta=(torch.full((1,), 0.3, dtype=torch.float64)).requires_grad_())
    if modulation is not None:
        args.update(m=rand(n), m_bias=rand(1))
        if config.get("fan_out"):
            args.update(fan_w=rand(n), fan_b=rand(n))
    if modulation == "retroactive":
        args.update(elig0=rand(b, n, n, scale=0.3))
    if modulation == "simple":
        args.pop("eta")
    names = list(args)
    y0 = rand(b, n)

    def run(x, y0, *tensors):
        kw = dict(zip(names, tensors))
        ys, hebb, elig = plastic_rnn_episode(x, y0, kw.pop("w"), kw.pop("alpha"),
                                             kw.pop("eta", None), **kw, **config)
        return (ys, hebb) if elig is None else (ys, hebb, elig)

    assert torch.autograd.gradcheck(run, (x, y0, *args.values()), eps=1e-6, atol=1e-7,
                                    rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: f"{k[0]}-{k[1]}-fan{k[2]}")
def test_state_across_two_calls_equals_one_long_call(kind):
    rule, modulation, fan_out = kind
    config = dict(rule=rule, modulation=modulation, fan_out=fan_out, clip=0.4)
    net = make_net(**config)
    x, _ = inputs(config, t=9)
    ys, state = net(x)
    loss_of(ys[:, :4], state.hebb, state.elig).backward()
    whole = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    ys1, state1 = net(x[:, :4])
    ys2, state2 = net(x[:, 4:], state1)
    torch.testing.assert_close(torch.cat([ys1, ys2], 1), ys, rtol=1e-5, atol=1e-6)
    for a, b in zip(state2, state):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # The gradient flows back through the carried state into the first call.
    loss_of(ys1, state2.hebb, state2.elig).backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, whole[k], rtol=1e-4, atol=1e-5)


def test_detached_state_truncates_backpropagation():
    net = make_net()
    x, _ = inputs({})
    ys1, state = net(x[:, :3])
    ys2, _ = net(x[:, 3:], state.detach())
    ys2.sum().backward()
    # Only the second call's graph: the same as starting the second call from that state.
    grads = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    ys3, _ = net(x[:, 3:], PlasticState(state.y.detach().clone(), state.hebb.detach().clone()))
    ys3.sum().backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, grads[k])


def test_larger_episode_checkpoints_and_batches():
    """Longer episodes (checkpointed backward with the clip, trace reversal without), a batch
    that the engine splits across threads: the float64 engine against the reference, to 1e-9
    (in float32 these strong random weights make the network chaotic over 40 steps, so rounding
    differences grow; the small-size test above covers float32)."""
    for config in (dict(clip=0.2), dict(), dict(modulation="retroactive", fan_out=True)):
        net = make_net(n=20, **config).double()
        x, _ = inputs(config, b=3, t=40, n=20, dtype=torch.float64)
        x.requires_grad_()
        ys, out = net(x)
        (ys_r, hebb_r, elig_r), p, _, xd = reference_run(net, x, net.initial_state(3))
        torch.testing.assert_close(ys, ys_r, rtol=1e-9, atol=1e-9)
        loss_of(ys, out.hebb, out.elig).backward()
        loss_of(ys_r, hebb_r, elig_r).backward()
        for name, param in net.named_parameters():
            torch.testing.assert_close(param.grad, p[name].grad, rtol=1e-8, atol=1e-8,
                                       msg=lambda m: f"d/d{name}: {m}")
        torch.testing.assert_close(x.grad, xd.grad, rtol=1e-8, atol=1e-8)


def test_state_dict_round_trip():
    config = dict(modulation="retroactive", fan_out=True, alpha="per_neuron", clip=0.5)
    net = make_net(seed=4, **config)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    other = PlasticRNN(N, **config)
    other.load_state_dict(torch.load(buffer))
    assert sorted(net.state_dict()) == ["alpha", "eta", "fan_b", "fan_w", "m", "m_bias", "w"]
    x, _ = inputs(config)
    torch.testing.assert_close(other(x)[0], net(x)[0], rtol=0, atol=0)
    fixed = PlasticRNN(N, learn_eta=False)
    assert "eta" in fixed.state_dict() and "eta" not in dict(fixed.named_parameters())


def test_parameters_train_with_a_torch_optimiser():
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, _ = inputs({})
    target = torch.sign(torch.randn(B, N))
    losses = []
    for _ in range(20):
        opt.zero_grad()
        ys, _ = net(x)
        loss = (ys[:, -1] - target).pow(2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_outputs_share_the_engines_memory():
    """The engine's outputs are numpy arrays wrapped by torch.from_numpy (no copy), and it
    reads its inputs in place (a write through the numpy view is seen by the next call)."""
    net = make_net()
    x, _ = inputs({})
    xt = x.transpose(0, 1).contiguous()
    ys, hebb, _ = plastic_rnn_episode(xt, torch.zeros(B, N), net.w, net.alpha, net.eta)
    assert ys.is_contiguous() and hebb.shape == (B, N, N)
    array = xt.numpy()
    assert np.shares_memory(array, xt.numpy())
    array[0] += 1.0  # the tensor changes with it: the engine sees the same memory
    ys2, _, _ = plastic_rnn_episode(xt, torch.zeros(B, N), net.w, net.alpha, net.eta)
    assert not torch.equal(ys2[0], ys[0])


def test_backward_twice_with_retain_graph():
    net = make_net()
    x, _ = inputs({})
    ys, _ = net(x)
    ys.sum().backward(retain_graph=True)
    first = net.w.grad.clone()
    ys.sum().backward()
    torch.testing.assert_close(net.w.grad, 2 * first)


# ---------------------------------------------------------------------------------------------
# Bad inputs: a ValueError or TypeError that says what was expected, never a crash.


@pytest.mark.parametrize("kwargs, message", [
    (dict(rule="stdp"), "rule: expected one of"),
    (dict(alpha="per_row"), "alpha: expected one of"),
    (dict(modulation="dopamine"), "modulation: expected one of"),
    (dict(fan_out=True), "fan_out: needs a modulation"),
    (dict(rule="oja", modulation="simple"), "rule: neuromodulation"),
    (dict(clip=-1.0), "clip: expected a positive number"),
    (dict(input_mode="multiplicative"), "input_mode: expected one of"),
])
def test_bad_options_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlasticRNN(N, **kwargs)
    with pytest.raises(ValueError, match="neurons: expected a positive int"):
        PlasticRNN(0)


def test_bad_inputs_raise_with_a_message():
    net = make_net()
    x, state = inputs({})
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32 \(the layer's\), got "
                                        r"torch.float64"):
        net(x.double())
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got ndarray"):
        net(x.numpy())
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, N\] = \[batch, steps, 6\]"):
        net(torch.zeros(B, T, N + 1))
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, N\]"):
        net(torch.zeros(T, N))
    with pytest.raises(ValueError, match="the plastic engine runs on the CPU only"):
        net(torch.zeros(B, T, N, device="meta"))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA engine"):
            net(x.cuda())
    with pytest.raises(ValueError, match=r"state.hebb: expected shape \[2, 6, 6\]"):
        net(x, PlasticState(state.y, state.hebb[:, :3]))
    with pytest.raises(ValueError, match="state.hebb: expected a contiguous tensor"):
        net(x, PlasticState(state.y, state.hebb.transpose(1, 2)))
    with pytest.raises(TypeError, match="state: expected a PlasticState"):
        net(x, state.y)
    with pytest.raises(ValueError, match="state.elig: only retroactive"):
        net(x, PlasticState(state.y, state.hebb, state.hebb))
    # The functional form takes time-major x and insists on contiguous memory.
    with pytest.raises(ValueError, match="x: expected a contiguous tensor"):
        plastic_rnn_episode(x.transpose(0, 1), state.y, net.w, net.alpha, net.eta)
    with pytest.raises(TypeError, match="x: expected dtype torch.float32"):
        plastic_rnn_episode(x.transpose(0, 1).contiguous().half(), state.y, net.w, net.alpha,
                            net.eta)
    with pytest.raises(ValueError, match=r"eta: expected shape \[1\]"):
        plastic_rnn_episode(x.transpose(0, 1).contiguous(), state.y, net.w, net.alpha,
                            torch.zeros(2))
    # The optional tensors are keywords (PlasticTensors' fields): a misspelt one is an error.
    for run in (plastic_rnn_episode, reference.plastic_rnn):
        with pytest.raises(TypeError, match=r"got unexpected keyword arguments \['hebb_0'\]"):
            run(x.transpose(0, 1).contiguous(), state.y, net.w, net.alpha, net.eta,
                hebb_0=state.hebb)


def test_engine_checks_arrays_itself():
    """The compiled engine checks what it is given, whatever calls it."""
    n, b, t = 3, 1, 2
    x = np.zeros((t, b, n), np.float32)
    y0 = np.zeros((b, n), np.float32)
    w = np.zeros((n, n), np.float32)
    alpha = np.zeros((n, n), np.float32)

    def weights(w=w, alpha=alpha, eta=0.1):
        return dict(w=w, alpha=alpha, eta=eta, modulator=None)
    with pytest.raises(TypeError, match="x: expected a float32 numpy array, got an array of "
                                        "dtype float16"):
        _engine.rnn_forward(x.astype(np.float16), y0, weights())
    with pytest.raises(TypeError, match="y0: expected a float32 numpy array, got an array of "
                                        "dtype float64"):
        _engine.rnn_forward(x, y0.astype(np.float64), weights())
    with pytest.raises(ValueError, match="w: expected a C-contiguous array"):
        _engine.rnn_forward(x, y0, weights(w=np.asfortranarray(np.ones((n, n), np.float32))))
    with pytest.raises(ValueError, match=r"x: expected shape \[T, B, N\]"):
        _engine.rnn_forward(np.zeros((t, b, n + 1), np.float32), y0, weights())
    with pytest.raises(ValueError, match=r"alpha: expected shape \[3\]"):
        _engine.rnn_forward(x, y0, weights(), alpha_shape="per_neuron")
    with pytest.raises(ValueError, match="m: expected an array of shape"):
        _engine.rnn_forward(x, y0, weights(), modulation="simple")
    with pytest.raises(ValueError, match="clip must be positive"):
        _engine.rnn_forward(x, y0, weights(), clip=0.0)
    with pytest.raises(ValueError, match="eta must be finite"):
        _engine.rnn_forward(x, y0, weights(eta=float("nan")))
    episode, ys, hebb, elig = _engine.rnn_forward(x, y0, weights())
    assert ys.shape == (t, b, n) and hebb.shape == (b, n, n) and elig.shape == (0,)
    with pytest.raises(ValueError, match=r"gy: expected shape \[2, 1, 3\]"):
        episode.backward(np.zeros((t, b, n + 1), np.float32), weights())
    with pytest.raises(ValueError, match="eta differs from the forward's"):
        episode.backward(np.zeros((t, b, n), np.float32), weights(eta=0.2))


def test_the_gil_is_released_while_the_kernels_run():
    """Another Python thread runs while an episode is in the engine. With a 10 s switch
    interval, a call that kept the GIL would stall the other thread until it returned."""
    import sys
    import threading
    import time

    n, b, t = 300, 4, 100
    rng = np.random.default_rng(0)
    x = rng.standard_normal((t, b, n)).astype(np.float32)
    y0 = np.zeros((b, n), np.float32)
    w = (0.01 * rng.standard_normal((n, n))).astype(np.float32)
    done, stamps = threading.Event(), []

    def tick():
        while not done.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.0005)  # releases the GIL, so that the call can start

    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    ticker = threading.Thread(target=tick)
    try:
        ticker.start()
        time.sleep(0.01)
        calls = []
        for _ in range(3):
            t0 = time.perf_counter()
            _engine.rnn_forward(x, y0, dict(w=w, alpha=w, eta=0.01, modulator=None))
            calls.append((t0, time.perf_counter()))
    finally:
        done.set()
        ticker.join()
        sys.setswitchinterval(interval)
    inside = sum(t0 < s < t1 for s in stamps for t0, t1 in calls)
    seconds = sum(t1 - t0 for t0, t1 in calls)
    assert inside >= 10, f"{inside} ticks of the other thread in {seconds:.2f} s of engine calls"
