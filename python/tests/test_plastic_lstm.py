"""PlasticLSTM (Rust engine) against the same equations in plain torch ops
(plasticity.reference.plastic_lstm): forward, every gradient, finite differences, carried state,
bad inputs. Same tolerance as test_plastic_rnn.py."""

import itertools

import pytest
import torch

from plasticity import reference
from plasticity.torch import LstmState, PlasticLSTM

from test_plastic_rnn import assert_close

D, H, B, T = 3, 5, 2, 6
KINDS = (None, "hebb", "simple", "retroactive")
CONFIGS = list(itertools.product(KINDS, ("per_neuron", "per_connection", "scalar")))


def make_lstm(kind, alpha="per_neuron", seed=0):
    torch.manual_seed(seed)
    net = PlasticLSTM(D, H, plasticity=kind, alpha=alpha, clip=0.3, eta_init=0.3)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in ("m_bias", "fan_b"):
                p.uniform_(-0.5, 0.5)
    return net


def random_state(kind, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.rand(*shape, generator=g, dtype=dtype) * 2 - 1) * 0.4

    hebb = rand(B, H, H) if kind is not None else None
    elig = rand(B, H, H) if kind == "retroactive" else None
    return LstmState(rand(B, H), rand(B, H), hebb, elig)


def reference_run(net, x, state):
    p = {k: v.detach().double().requires_grad_() for k, v in net.named_parameters()}
    s = [None if t is None else t.detach().double().requires_grad_() for t in state]
    xd = x.detach().double().requires_grad_()
    xproj = xd @ p["input.weight"].t() + p["input.bias"]
    out = reference.plastic_lstm(
        xproj, s[0], s[1], p["w_h"], p.get("alpha"), p.get("eta"), hebb0=s[2], elig0=s[3],
        m=p.get("m"), m_bias=p.get("m_bias"), fan_w=p.get("fan_w"), fan_b=p.get("fan_b"),
        plasticity=net.plasticity, clip=net.clip)
    return out, p, s, xd


def loss_of(outputs, seed=2):
    g = torch.Generator().manual_seed(seed)
    return sum((torch.randn(o.shape, generator=g).to(o.dtype) * o).sum()
               for o in outputs if o is not None)


@pytest.mark.parametrize("kind, alpha", CONFIGS, ids=lambda v: str(v))
def test_forward_and_every_gradient_match_the_reference(kind, alpha):
    net = make_lstm(kind, alpha)
    x = torch.randn(B, T, D).requires_grad_()
    state = LstmState(*(None if t is None else t.clone().requires_grad_()
                        for t in random_state(kind)))
    hs, out = net(x, state)
    (hs_r, c_r, hebb_r, elig_r), p, s, xd = reference_run(net, x, state)
    assert_close("hs", hs, hs_r)
    assert_close("c", out.c, c_r)
    for name, got, want in (("hebb", out.hebb, hebb_r), ("elig", out.elig, elig_r)):
        assert (got is None) == (want is None), name
        if want is not None:
            assert_close(name, got, want)
    loss_of((hs, out.c, out.hebb, out.elig)).backward()
    loss_of((hs_r, c_r, hebb_r, elig_r)).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, f"{name}: no gradient"
        assert_close(f"d/d{name}", param.grad, p[name].grad)
    assert_close("d/dx", x.grad, xd.grad)
    for name, got, want in zip(("h0", "c0", "hebb0", "elig0"), state, s):
        if got is not None:
            assert_close(f"d/d{name}", got.grad, want.grad)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_gradcheck_finite_differences(kind):
    """torch.autograd.gradcheck (float64 engine) with respect to every parameter, the input and
    the initial state, on D=3, H=5, B=2, T=4."""
    net = make_lstm(kind, "per_connection").double()
    names = [k for k, _ in net.named_parameters()]
    x = torch.randn(B, 4, D, dtype=torch.float64)
    state = [t for t in random_state(kind, torch.float64) if t is not None]

    def run(x, *tensors):
        params = dict(zip(names, tensors[:len(names)]))
        given = list(tensors[len(names):]) + [None] * (4 - len(state))
        hs, out = torch.func.functional_call(net, params, (x, LstmState(*given)))
        return tuple(o for o in (hs, *out) if o is not None)

    inputs = (x, *(p.detach().clone() for _, p in net.named_parameters()), *state)
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_state_across_two_calls_equals_one_long_call(kind):
    net = make_lstm(kind)
    x = torch.randn(B, 9, D)
    hs, state = net(x)
    hs1, state1 = net(x[:, :4])
    hs2, state2 = net(x[:, 4:], state1)
    torch.testing.assert_close(torch.cat([hs1, hs2], 1), hs, rtol=1e-5, atol=1e-6)
    for a, b in zip(state2, state):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    loss_of((hs, state.c)).backward()
    whole = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    loss_of((torch.cat([hs1, hs2], 1), state2.c)).backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, whole[k], rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_with_a_message():
    with pytest.raises(ValueError, match="plasticity: expected one of"):
        PlasticLSTM(D, H, plasticity="oja")
    with pytest.raises(ValueError, match="clip: expected a positive finite number"):
        PlasticLSTM(D, H, clip=None)
    net = make_lstm("retroactive")
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, D\] = \[batch, steps, 3\]"):
        net(torch.zeros(B, T, D + 1))
    with pytest.raises(TypeError, match="x: expected dtype torch.float32"):
        net(torch.zeros(B, T, D, dtype=torch.float64))
    state = random_state("retroactive")
    with pytest.raises(TypeError, match="state.elig: expected a torch.Tensor"):
        net(torch.zeros(B, T, D), state._replace(elig=None))
    with pytest.raises(TypeError, match="state: expected an LstmState"):
        net(torch.zeros(B, T, D), state[:2])
    plain = make_lstm(None)
    with pytest.raises(ValueError, match="state.hebb: plasticity None has no such trace"):
        plain(torch.zeros(B, T, D), state._replace(elig=None))
