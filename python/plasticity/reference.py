"""The plastic recurrent network in plain PyTorch ops, the way the papers' code writes it:
one step at a time, autograd through every step (it keeps every step's trace, memory
``O(T B N^2)``). Slow; it is what :class:`plasticity.torch.PlasticRNN` is checked against
(the tests) and compared with (``examples/python/bench.py``).

ICML 2018 (Miconi, Clune & Stanley, arXiv 1804.02464), eq. 1-3, for each episode of the batch::

    y_j(t)       = tanh( sum_i (w_ij + alpha_ij Hebb_ij(t)) y_i(t-1) + x_j(t) )      eq. 1
    Hebb_ij(t+1) = (1 - eta) Hebb_ij(t) + eta y_i(t-1) y_j(t)                       eq. 2
    Hebb_ij(t+1) = Hebb_ij(t) + eta y_j(t) (y_i(t-1) - Hebb_ij(t) y_j(t))           eq. 3 (Oja)

ICLR 2019 (Miconi et al., "Backpropamine", arXiv 2002.10585), section 3::

    M(t)         = tanh( sum_j m_j y_j(t) + m_b )
    eta_j(t)     = M(t), or v_j M(t) + b_j with fan-out
    Hebb_ij(t+1) = Hebb_ij(t) + eta_j(t) y_i(t-1) y_j(t)                            eq. 3 (simple)
    Hebb_ij(t+1) = Hebb_ij(t) + eta_j(t) E_ij(t)                                    eq. 4 (retroactive)
    E_ij(t+1)    = (1 - eta_E) E_ij(t) + eta_E y_i(t-1) y_j(t)                      eq. 5

then ``Hebb = clip(Hebb, -c, c)`` when a clip is set. In clamped input mode a neuron whose input
is non-zero outputs its input (ICML 2018 section 4.2); ``dL/dx_j`` at ``x_j = 0`` (where the
output jumps) is taken as the additive step's.
"""

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


def _trace0(t: Optional[Tensor], batch: int, n: int, dtype: torch.dtype) -> Tensor:
    """A starting trace ``[B, N, N]``: ``t``, or zeros when None."""
    return torch.zeros(batch, n, n, dtype=dtype) if t is None else t


class PlasticTensors(NamedTuple):
    """The optional tensors that :func:`plastic_rnn`, :func:`plastic_lstm` and
    :func:`plasticity.torch.plastic_rnn_episode` take as keywords: the starting traces
    ``hebb0, elig0: [B, N, N]`` (None: zeros; ``elig0`` with retroactive modulation only) and
    the neuromodulator's parameters (ICLR 2019 section 3) ``m: [N]``, ``m_bias: [1]`` and, with
    fan-out, ``fan_w, fan_b: [N]`` (None where the network has none)."""

    hebb0: Optional[Tensor] = None
    elig0: Optional[Tensor] = None
    m: Optional[Tensor] = None
    m_bias: Optional[Tensor] = None
    fan_w: Optional[Tensor] = None
    fan_b: Optional[Tensor] = None

    @classmethod
    def of_keywords(cls, function: str, keywords: dict) -> "PlasticTensors":
        """The tensors of a call's extra keywords; raises TypeError, as Python does for an
        unknown keyword argument of ``function``, on any other name."""
        unknown = sorted(set(keywords) - set(cls._fields))
        if unknown:
            raise TypeError(f"{function}() got unexpected keyword arguments {unknown} (expected "
                            f"keywords: {', '.join(cls._fields)})")
        return cls(**keywords)

    def rate(self, post: Tensor) -> Tensor:
        """The plastic rate the modulator sets from the new activity ``post: [B, N]``:
        ``M = tanh(m . post + m_b)``, ``eta_j = M`` or ``v_j M + b_j`` with fan-out; returns
        ``[B, 1, N|1]``, broadcast over the presynaptic ``i``."""
        rate = torch.tanh(post @ self.m + self.m_bias).unsqueeze(1)  # M(t): [B, 1]
        if self.fan_w is not None:
            rate = self.fan_w * rate + self.fan_b  # [B, N]: eta_j = v_j M + b_j
        return rate.unsqueeze(1)


def _trace_step(kind: str, hebb: Tensor, elig: Optional[Tensor], outer: Tensor, eta,
                rate: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """One update of the traces from ``outer = y_i(t-1) y_j(t): [B, N, N]``: ``"hebb"`` (the
    decaying trace at rate ``eta``, ICML 2018 eq. 2), ``"simple"`` (ICLR 2019 eq. 3) or
    ``"retroactive"`` (the old ``E``, eq. 4, then ``E``'s update at rate ``eta``, eq. 5), the
    modulated ones at ``rate``. Returns ``(hebb, elig)`` before clipping."""
    if kind == "hebb":
        return (1 - eta) * hebb + eta * outer, elig
    if kind == "simple":
        return hebb + rate * outer, elig
    return hebb + rate * elig, (1 - eta) * elig + eta * outer


def plastic_rnn(
    x: Tensor,
    y0: Tensor,
    w: Tensor,
    alpha: Tensor,
    eta: Optional[Tensor] = None,
    *,
    rule: str = "hebb",
    modulation: Optional[str] = None,
    clip: Optional[float] = None,
    input_mode: str = "additive",
    **tensors: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Runs ``B`` episodes of ``T`` steps; returns ``(ys, hebb, elig)``.

    Shapes: ``x: [B, T, N]`` (batch first), ``y0: [B, N]``, ``w: [N, N]`` (row ``i``
    presynaptic, column ``j`` postsynaptic), ``alpha: [N, N] | [N] | [1]`` (per connection, per
    postsynaptic neuron, scalar), ``eta: [1]`` (the rate; ``eta_E`` with retroactive
    modulation), and as ``tensors`` the keywords ``hebb0, elig0: [B, N, N]`` (None: zeros),
    ``m, fan_w, fan_b: [N]``, ``m_bias: [1]`` (:class:`PlasticTensors`). Returns ``ys: [B, T, N]``,
    the final ``hebb: [B, N, N]`` and, with retroactive modulation, the final eligibility trace
    ``elig: [B, N, N]`` (else None).
    """
    tensors = PlasticTensors.of_keywords("plastic_rnn", tensors)
    batch, steps, n = x.shape
    if alpha.dim() == 1:  # per neuron [N] or scalar [1]: alpha_ij = alpha_j
        alpha = alpha.view(1, -1)
    hebb = _trace0(tensors.hebb0, batch, n, x.dtype)
    elig = _trace0(tensors.elig0, batch, n, x.dtype) if modulation == "retroactive" else None
    y = y0
    ys = []
    for t in range(steps):
        xt = x[:, t]
        pre = torch.bmm(y.unsqueeze(1), w + alpha * hebb).squeeze(1)  # [B, N]
        if input_mode == "clamped":
            # Free neurons (x_j = 0) take the additive step: the same value as tanh(pre), and
            # at the switch point x_j = 0 the additive step's derivative, as the engine does.
            y_new = torch.where(xt != 0, xt, torch.tanh(pre + xt))
        else:
            y_new = torch.tanh(pre + xt)
        outer = y.unsqueeze(2) * y_new.unsqueeze(1)  # y_i(t-1) y_j(t): [B, N, N]
        if modulation is None and rule == "oja":
            post = y_new.unsqueeze(1)
            hebb = hebb + eta * post * (y.unsqueeze(2) - hebb * post)
        elif modulation is None:
            hebb, _ = _trace_step("hebb", hebb, None, outer, eta, None)
        else:
            hebb, elig = _trace_step(modulation, hebb, elig, outer, eta, tensors.rate(y_new))
        if clip is not None:
            hebb = torch.clamp(hebb, -clip, clip)
        ys.append(y_new)
        y = y_new
    return torch.stack(ys, dim=1), hebb, elig


def plastic_lstm(
    xproj: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_h: Tensor,
    alpha: Optional[Tensor] = None,
    eta: Optional[Tensor] = None,
    *,
    plasticity: Optional[str] = "hebb",
    clip: float = 2.0,
    **tensors: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """The plastic LSTM (ICLR 2019 section 4.3) over ``T`` steps of ``B`` sequences; returns
    ``(hs, c, hebb, elig)``.

    Shapes: ``xproj: [B, T, 4H]`` (the input projection ``W_x x + b``, gates ``i, f, o, g``),
    ``h0, c0: [B, H]``, ``w_h: [H, 4H]`` (its last ``H`` columns are the candidate's fixed
    weights ``w``), ``alpha: [H, H] | [H] | [1]``, ``eta: [1]`` (the trace's rate, or ``E``'s
    with retroactive modulation), and as ``tensors`` the keywords ``hebb0, elig0: [B, H, H]``,
    ``m, fan_w, fan_b: [H]``, ``m_bias: [1]`` (:class:`PlasticTensors`). Each step::

        a       = xp + h W_h;   a_g += h (alpha * Hebb)      the candidate's plastic part
        i, f, o = sigmoid(a_i, a_f, a_o);   g = tanh(a_g);   c' = f c + i g;   h' = o tanh(c')
        Hebb'   = clip((1 - eta) Hebb + eta outer(h, g))                       "hebb"
        Hebb'   = clip(Hebb + eta_j outer(h, g)),  eta_j = v_j M + b_j          "simple"
        Hebb'   = clip(Hebb + eta_j E);  E' = (1 - eta) E + eta outer(h, g)     "retroactive"

    with ``M = tanh(m . h' + m_b)``. Returns ``hs: [B, T, H]``, the final ``c: [B, H]``,
    ``hebb`` and ``elig`` (``[B, H, H]``, None when the kind has none).
    """
    tensors = PlasticTensors.of_keywords("plastic_lstm", tensors)
    batch, steps, h4 = xproj.shape
    hidden = h4 // 4
    if alpha is not None and alpha.dim() == 1:
        alpha = alpha.view(1, -1)
    plastic = plasticity is not None
    hebb = _trace0(tensors.hebb0, batch, hidden, xproj.dtype) if plastic else None
    elig = (_trace0(tensors.elig0, batch, hidden, xproj.dtype) if plasticity == "retroactive"
            else None)
    h, c = h0, c0
    hs = []
    for t in range(steps):
        a = xproj[:, t] + h @ w_h
        if plastic:
            a_g = a[:, 3 * hidden:] + torch.bmm(h.unsqueeze(1), alpha * hebb).squeeze(1)
            a = torch.cat([a[:, :3 * hidden], a_g], dim=1)
        i, f, o = (torch.sigmoid(a[:, k * hidden:(k + 1) * hidden]) for k in range(3))
        g = torch.tanh(a[:, 3 * hidden:])
        c = f * c + i * g
        h_new = o * torch.tanh(c)
        if plastic:
            outer = h.unsqueeze(2) * g.unsqueeze(1)  # h_i g_j
            rate = None if plasticity == "hebb" else tensors.rate(h_new)  # [B, 1, H]
            hebb, elig = _trace_step(plasticity, hebb, elig, outer, eta, rate)
            hebb = torch.clamp(hebb, -clip, clip)
        hs.append(h_new)
        h = h_new
    return torch.stack(hs, dim=1), c, hebb, elig
