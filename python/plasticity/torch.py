"""PyTorch layers on the plastic engine: :class:`PlasticRNN`.

A plastic recurrent network (Miconi, Clune & Stanley, ICML 2018, eq. 1-3; neuromodulated:
Miconi et al., ICLR 2019, section 3; :mod:`plasticity.reference` has the equations in plain
torch ops). Each connection has a fixed weight ``w_ij``, a plasticity coefficient ``alpha_ij``
and a Hebbian trace ``Hebb_ij`` that changes during the episode::

    y_j(t)       = tanh( sum_i (w_ij + alpha_ij Hebb_ij(t)) y_i(t-1) + x_j(t) )
    Hebb_ij(t+1) = (1 - eta) Hebb_ij(t) + eta y_i(t-1) y_j(t)     (rule="hebb"; "oja": eq. 3)

``w``, ``alpha``, ``eta`` and the modulator's weights are ordinary ``nn.Parameter``\\ s, trained by
backpropagation through the whole episode. Forward and backward run in the Rust engine
(``plasticity._engine``) on the tensors' memory: CPU tensors, float32 (float64 for gradient
checks), C-contiguous, with the GIL released while the kernels run. The backward keeps no
``[T, N, N]`` history: it reverses the trace or recomputes it from ``sqrt(T)`` checkpoints.
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from . import _engine
from .reference import PlasticTensors

__all__ = ["PlasticRNN", "PlasticState", "plastic_rnn_episode", "PlasticLSTM", "LstmState", "RULES", "ALPHAS",
           "MODULATIONS", "INPUT_MODES"]

RULES = ("hebb", "oja")
ALPHAS = ("per_connection", "per_neuron", "scalar")
MODULATIONS = (None, "simple", "retroactive")
INPUT_MODES = ("additive", "clamped")
_DTYPES = (torch.float32, torch.float64)


class PlasticState(NamedTuple):
    """The state a :class:`PlasticRNN` carries from one call to the next.

    ``y: [B, N]`` the last activity, ``hebb: [B, N, N]`` the Hebbian trace ``Hebb``
    (row ``i`` presynaptic, column ``j`` postsynaptic), ``elig: [B, N, N]`` the eligibility
    trace ``E`` (retroactive modulation; None otherwise).
    """

    y: Tensor
    hebb: Tensor
    elig: Optional[Tensor] = None

    def detach(self) -> "PlasticState":
        """The same state cut from the graph (truncated backpropagation through time)."""
        return PlasticState(*(None if t is None else t.detach() for t in self))


def _check(name: str, t: Optional[Tensor], shape: Optional[Sequence[int]] = None,
           dtype: Optional[torch.dtype] = None, contiguous: bool = True) -> None:
    """Raises TypeError or ValueError, saying what was expected, unless ``t`` is a CPU tensor of
    ``dtype`` (float32 or float64 when None) and ``shape``, C-contiguous when asked."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(
            f"{name}: a tensor on {t.device}; the plastic engine runs on the CPU only (this build "
            f"has no CUDA engine): move the model and its inputs with .cpu()")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the layer's), got {t.dtype}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected dtype torch.float32 (or torch.float64), got {t.dtype}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(
            f"{name}: expected a contiguous tensor (the engine reads its memory in place); "
            f"call .contiguous() first")


def _array(t: Optional[Tensor]):
    """The tensor's memory as a numpy array (shared, no copy), or None."""
    return None if t is None else t.detach().numpy()


def _scalar(t: Optional[Tensor]) -> float:
    return 0.0 if t is None else float(t.detach().reshape(-1)[0])


def _choice(name: str, value, choices: Sequence) -> None:
    """Raises ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def _alpha_dims(alpha_shape: str, n: int) -> Tuple[int, ...]:
    """The shape of ``alpha`` for ``n`` neurons: ``[N, N]``, ``[N]`` or ``[1]``."""
    return {"per_connection": (n, n), "per_neuron": (n,), "scalar": (1,)}[alpha_shape]


def _add_eta(module: nn.Module, eta_init: float, learn_eta: bool) -> None:
    """Gives ``module`` its rate ``eta: [1]`` at ``eta_init``: a parameter when ``learn_eta``,
    else a buffer."""
    eta = torch.full((1,), float(eta_init))
    if learn_eta:
        module.eta = nn.Parameter(eta)
    else:
        module.register_buffer("eta", eta)


def _add_modulator(module: nn.Module, n: int, fan_out: bool) -> None:
    """Gives ``module`` the neuromodulator's parameters (ICLR 2019 section 3): ``m: [N]``
    (``U(-1/sqrt(N), 1/sqrt(N))``), ``m_bias: [1]`` (0) and with ``fan_out`` ``fan_w: [N]``
    (``U(-1, 1)``) and ``fan_b: [N]`` (0)."""
    bound = 1.0 / n ** 0.5
    module.m = nn.Parameter(torch.empty(n).uniform_(-bound, bound))
    module.m_bias = nn.Parameter(torch.zeros(1))
    if fan_out:
        module.fan_w = nn.Parameter(torch.empty(n).uniform_(-1.0, 1.0))
        module.fan_b = nn.Parameter(torch.zeros(n))


def _modulator_of(module: nn.Module) -> dict:
    """The module's neuromodulator parameters (None where it has none), as keyword arguments."""
    return {k: getattr(module, k, None) for k in ("m", "m_bias", "fan_w", "fan_b")}


def _check_input(x: Tensor, size: int, dtype: torch.dtype, what: str) -> None:
    """Checks a layer's input ``x: [B, T, size]`` with ``B, T > 0`` (any strides); ``what``
    names the last dimension."""
    _check("x", x, dtype=dtype, contiguous=False)
    if x.dim() != 3 or x.shape[2] != size or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected shape [B, T, {what}] = [batch, steps, {size}] with B, "
                         f"T > 0, got {list(x.shape)}")


def _input_grads(needs: Sequence[bool], g: dict, keys: Sequence[Optional[str]],
                 scalars: dict) -> tuple:
    """The gradients an autograd Function's backward returns: for input ``k`` named
    ``keys[k]`` (None: not differentiable), the engine's ``g[key]`` as a tensor (a float
    ``g[key]`` filled into the shape of ``scalars[key]``), or None when not needed or absent."""
    def grad(k, key):
        if key is None or not needs[k] or key not in g:
            return None
        v = g[key]
        return torch.full_like(scalars[key], v) if isinstance(v, float) else torch.from_numpy(v)
    return tuple(grad(k, key) for k, key in enumerate(keys))


def _modulator(m: Optional[Tensor], m_bias: Optional[Tensor], fan_w: Optional[Tensor],
               fan_b: Optional[Tensor]) -> dict:
    """The neuromodulator's parameters as the engine takes them: ``m, fan_w, fan_b: [N]``
    (arrays or None) and ``m_bias`` (a float)."""
    return dict(m=_array(m), m_bias=_scalar(m_bias), fan_w=_array(fan_w), fan_b=_array(fan_b))


def _weights(w: Tensor, alpha: Optional[Tensor], eta: Optional[Tensor], m: Optional[Tensor],
             m_bias: Optional[Tensor], fan_w: Optional[Tensor], fan_b: Optional[Tensor]) -> dict:
    """The learned parameters as the engine takes them, one dict for the forward and the
    backward: ``w`` (the network's ``w: [N, N]``, the LSTM's ``w_h: [H, 4H]``), ``alpha`` (an
    array; None for an LSTM without plasticity), ``eta`` (a float) and the ``modulator``
    (:func:`_modulator`)."""
    return dict(w=_array(w), alpha=_array(alpha), eta=_scalar(eta),
                modulator=_modulator(m, m_bias, fan_w, fan_b))


class _PlasticEpisode(torch.autograd.Function):
    """One call of the engine: forward and backward through ``T`` steps of ``B`` episodes."""

    @staticmethod
    def forward(ctx, options, x, y0, hebb0, elig0, w, alpha, eta, m, m_bias, fan_w, fan_b):
        episode, ys, hebb, elig = _engine.rnn_forward(
            _array(x), _array(y0), _weights(w, alpha, eta, m, m_bias, fan_w, fan_b),
            h0=_array(hebb0), e0=_array(elig0), **options)
        ctx.episode = episode
        ctx.save_for_backward(w, alpha, eta, m, m_bias, fan_w, fan_b)
        ctx.set_materialize_grads(False)
        ys, hebb, elig = torch.from_numpy(ys), torch.from_numpy(hebb), torch.from_numpy(elig)
        if options["modulation"] != "retroactive":
            ctx.mark_non_differentiable(elig)
        return ys, hebb, elig

    @staticmethod
    def backward(ctx, g_ys, g_hebb, g_elig):
        w, alpha, eta, m, m_bias, fan_w, fan_b = ctx.saved_tensors
        n, b, t = ctx.episode.shape
        if g_ys is None:
            g_ys = torch.zeros(t, b, n, dtype=w.dtype)
        contiguous = (lambda g: None if g is None else g.contiguous())
        g = ctx.episode.backward(
            _array(g_ys.contiguous()), _weights(w, alpha, eta, m, m_bias, fan_w, fan_b),
            gh=_array(contiguous(g_hebb)), ge=_array(contiguous(g_elig)))
        keys = (None, "x", "y0", "h0", "e0", "w", "alpha", "eta", "m", "m_bias", "fan_w", "fan_b")
        return _input_grads(ctx.needs_input_grad, g, keys, dict(eta=eta, m_bias=m_bias))


def plastic_rnn_episode(
    x: Tensor,
    y0: Tensor,
    w: Tensor,
    alpha: Tensor,
    eta: Optional[Tensor] = None,
    *,
    rule: str = "hebb",
    alpha_shape: str = "per_connection",
    modulation: Optional[str] = None,
    fan_out: bool = False,
    clip: Optional[float] = None,
    input_mode: str = "additive",
    **tensors: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The functional form of :class:`PlasticRNN`, time-major, on the engine's layout.

    Shapes (every tensor on the CPU, one dtype, float32 or float64, contiguous):
    ``x: [T, B, N]`` (time first), ``y0: [B, N]``, ``w: [N, N]``,
    ``alpha: [N, N] | [N] | [1]`` as ``alpha_shape`` says, ``eta: [1]`` (the trace's rate;
    ``eta_E`` with retroactive modulation; unused, may be None, with simple modulation),
    and as ``tensors`` (:class:`plasticity.reference.PlasticTensors`) the keywords
    ``hebb0, elig0: [B, N, N]`` or None (zeros), ``m: [N]``, ``m_bias: [1]``,
    ``fan_w, fan_b: [N]`` (with ``fan_out``). Returns ``ys: [T, B, N]``,
    ``hebb: [B, N, N]`` (the trace after the last step) and ``elig: [B, N, N]`` (retroactive;
    else None). Differentiable with respect to every tensor argument.
    """
    tensors = PlasticTensors.of_keywords("plastic_rnn_episode", tensors)
    hebb0, elig0, m, m_bias, fan_w, fan_b = tensors
    for name, value, choices in (("rule", rule, RULES), ("alpha_shape", alpha_shape, ALPHAS),
                                 ("modulation", modulation, MODULATIONS),
                                 ("input_mode", input_mode, INPUT_MODES)):
        _choice(name, value, choices)
    _check("w", w)
    dtype = w.dtype
    if w.dim() != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise ValueError(f"w: expected shape [N, N] with N > 0, got {list(w.shape)}")
    n = w.shape[0]
    _check("x", x, dtype=dtype)
    if x.dim() != 3 or x.shape[2] != n or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected shape [T, B, N] = [steps, batch, {n}] with T, B > 0, "
                         f"got {list(x.shape)}")
    b = x.shape[1]
    _check("y0", y0, (b, n), dtype)
    _check("alpha", alpha, _alpha_dims(alpha_shape, n), dtype)
    if modulation != "simple":
        _check("eta", eta, (1,), dtype)
    for name, t in (("hebb0", hebb0), ("elig0", elig0)):
        if t is not None:
            _check(name, t, (b, n, n), dtype)
    if elig0 is not None and modulation != "retroactive":
        raise ValueError("elig0: only retroactive modulation keeps an eligibility trace")
    if modulation is not None:
        _check("m", m, (n,), dtype)
        _check("m_bias", m_bias, (1,), dtype)
        if fan_out:
            _check("fan_w", fan_w, (n,), dtype)
            _check("fan_b", fan_b, (n,), dtype)
    if clip is not None and not clip > 0:
        raise ValueError(f"clip: expected a positive number or None, got {clip!r}")
    options = dict(rule=rule, alpha_shape=alpha_shape, modulation=modulation, fan_out=fan_out,
                   clip=None if clip is None else float(clip), input_mode=input_mode)
    if modulation is None:
        m = m_bias = fan_w = fan_b = None
    elif not fan_out:
        fan_w = fan_b = None
    if modulation == "simple":
        eta = None
    ys, hebb, elig = _PlasticEpisode.apply(options, x, y0, hebb0, elig0, w, alpha, eta, m,
                                           m_bias, fan_w, fan_b)
    return ys, hebb, (elig if modulation == "retroactive" else None)


class PlasticRNN(nn.Module):
    """A fully recurrent plastic network of ``neurons`` neurons (ICML 2018 eq. 1-3; ICLR 2019
    section 3 with ``modulation``), run by the Rust engine.

    Args:
        neurons: ``N``, the neurons; the input has one value per neuron (``x_j`` is added to
            neuron ``j``'s pre-activation), and so has the output.
        rule: ``"hebb"`` (decaying Hebbian trace, eq. 2) or ``"oja"`` (Oja's rule, eq. 3).
        alpha: shape of the plasticity coefficients: ``"per_connection"`` (``[N, N]``, the
            paper's), ``"per_neuron"`` (``[N]``, ``alpha_ij = alpha_j``) or ``"scalar"``
            (``[1]``).
        modulation: None (a fixed rate ``eta``), ``"simple"`` (the modulator
            ``M(t) = tanh(m . y(t) + m_b)`` is the rate: ICLR 2019 eq. 3) or ``"retroactive"``
            (``M(t)`` turns an eligibility trace ``E`` into plastic change, eq. 4-5; ``eta`` is
            then ``E``'s rate ``eta_E``). Decaying Hebb only.
        fan_out: with a modulation, one rate per postsynaptic neuron ``eta_j = v_j M(t) + b_j``.
        clip: clip ``Hebb`` to ``[-clip, clip]`` after every update (None: no clipping).
        input_mode: ``"additive"`` (``x`` added inside the tanh) or ``"clamped"`` (a neuron
            whose input is non-zero outputs its input; ICML 2018 section 4.2).
        learn_eta: whether ``eta`` is trained (a parameter) or fixed (a buffer).
        init_std: ``w`` and ``alpha`` start as ``init_std * N(0, 1)``.
        eta_init: the initial ``eta``.

    Parameters (``nn.Parameter``): ``w: [N, N]`` (row ``i`` presynaptic, column ``j``
    postsynaptic), ``alpha: [N, N] | [N] | [1]``, ``eta: [1]`` (not with simple modulation),
    and with a modulation ``m: [N]`` (``U(-1/sqrt(N), 1/sqrt(N))``), ``m_bias: [1]`` (0), with
    fan-out ``fan_w: [N]`` (``U(-1, 1)``) and ``fan_b: [N]`` (0).

    Call: ``y, state = rnn(x, state=None)`` with ``x: [B, T, N]`` (batch first, like
    ``torch.nn.RNN(batch_first=True)``) on the CPU in the layer's dtype; ``state`` a
    :class:`PlasticState` (None: ``y = 0``, ``Hebb = 0``, ``E = 0``). Returns ``y: [B, T, N]``,
    every step's activity, and the :class:`PlasticState` after the last step; pass it to the
    next call to continue the episodes (``state.detach()`` for truncated backpropagation
    through time).
    """

    def __init__(self, neurons: int, rule: str = "hebb", alpha: str = "per_connection",
                 modulation: Optional[str] = None, fan_out: bool = False,
                 clip: Optional[float] = None, input_mode: str = "additive",
                 learn_eta: bool = True, init_std: float = 0.01, eta_init: float = 0.01):
        super().__init__()
        if not isinstance(neurons, int) or neurons <= 0:
            raise ValueError(f"neurons: expected a positive int, got {neurons!r}")
        for name, value, choices in (("rule", rule, RULES), ("alpha", alpha, ALPHAS),
                                     ("modulation", modulation, MODULATIONS),
                                     ("input_mode", input_mode, INPUT_MODES)):
            _choice(name, value, choices)
        if modulation is not None and rule != "hebb":
            raise ValueError(f"rule: neuromodulation sets the rate of the decaying Hebbian "
                             f"trace; rule={rule!r} is not supported with it")
        if fan_out and modulation is None:
            raise ValueError("fan_out: needs a modulation (\"simple\" or \"retroactive\")")
        if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
            raise ValueError(f"clip: expected a positive number or None, got {clip!r}")
        n = neurons
        self.neurons, self.rule, self.alpha_shape = n, rule, alpha
        self.modulation, self.fan_out, self.clip, self.input_mode = (
            modulation, fan_out, None if clip is None else float(clip), input_mode)
        self.w = nn.Parameter(init_std * torch.randn(n, n))
        self.alpha = nn.Parameter(init_std * torch.randn(*_alpha_dims(alpha, n)))
        if modulation != "simple":
            _add_eta(self, eta_init, learn_eta)
        else:
            self.eta = None
        if modulation is not None:
            _add_modulator(self, n, fan_out)

    def extra_repr(self) -> str:
        return (f"neurons={self.neurons}, rule={self.rule!r}, alpha={self.alpha_shape!r}, "
                f"modulation={self.modulation!r}, fan_out={self.fan_out}, clip={self.clip}, "
                f"input_mode={self.input_mode!r}")

    def initial_state(self, batch: int) -> PlasticState:
        """The zero state of ``batch`` episodes: ``y = 0``, ``Hebb = 0`` (and ``E = 0``)."""
        n, dtype = self.neurons, self.w.dtype
        elig = torch.zeros(batch, n, n, dtype=dtype) if self.modulation == "retroactive" else None
        return PlasticState(torch.zeros(batch, n, dtype=dtype),
                            torch.zeros(batch, n, n, dtype=dtype), elig)

    def forward(self, x: Tensor, state: Optional[PlasticState] = None
                ) -> Tuple[Tensor, PlasticState]:
        """Runs ``T`` steps of ``B`` episodes: ``x: [B, T, N]`` -> ``(y: [B, T, N], state)``.

        ``x`` may have any strides: it is copied once into the engine's time-major layout
        (no copy when ``B = 1``). The state's tensors must be contiguous.
        """
        n, dtype = self.neurons, self.w.dtype
        _check_input(x, n, dtype, "N")
        b = x.shape[0]
        if state is None:
            y0, hebb0, elig0 = torch.zeros(b, n, dtype=dtype), None, None
        else:
            if not isinstance(state, tuple) or len(state) not in (2, 3):
                raise TypeError(f"state: expected a PlasticState (y, hebb, elig), got "
                                f"{type(state).__name__}")
            y0, hebb0 = state[0], state[1]
            elig0 = state[2] if len(state) == 3 else None
            _check("state.y", y0, (b, n), dtype)
            _check("state.hebb", hebb0, (b, n, n), dtype)
            if self.modulation == "retroactive":
                _check("state.elig", elig0, (b, n, n), dtype)
            elif elig0 is not None:
                raise ValueError("state.elig: only retroactive modulation keeps an eligibility "
                                 "trace; expected None")
        ys, hebb, elig = plastic_rnn_episode(
            x.transpose(0, 1).contiguous(), y0, self.w, self.alpha, self.eta,
            hebb0=hebb0, elig0=elig0, **_modulator_of(self), rule=self.rule, alpha_shape=self.alpha_shape,
            modulation=self.modulation, fan_out=self.fan_out, clip=self.clip,
            input_mode=self.input_mode)
        return ys.transpose(0, 1), PlasticState(ys[-1], hebb, elig)


# ---------------------------------------------------------------------------------------------
# The plastic LSTM (ICLR 2019 section 4.3).

LSTM_PLASTICITY = (None, "hebb", "simple", "retroactive")


class LstmState(NamedTuple):
    """The state a :class:`PlasticLSTM` carries from one call to the next: ``h, c: [B, H]``,
    ``hebb: [B, H, H]`` (plastic kinds), ``elig: [B, H, H]`` (retroactive); None where the kind
    has no such trace."""

    h: Tensor
    c: Tensor
    hebb: Optional[Tensor] = None
    elig: Optional[Tensor] = None

    def detach(self) -> "LstmState":
        """The same state cut from the graph (truncated backpropagation through time)."""
        return LstmState(*(None if t is None else t.detach() for t in self))


class _PlasticLstmRun(torch.autograd.Function):
    """One call of the engine's LSTM recurrence: forward and backward through ``T`` steps."""

    @staticmethod
    def forward(ctx, options, xproj, h0, c0, hebb0, elig0, w_h, alpha, eta, m, m_bias, fan_w,
                fan_b):
        run, hs, c, hebb, elig = _engine.lstm_forward(
            _array(xproj), _array(h0), _array(c0),
            _weights(w_h, alpha, eta, m, m_bias, fan_w, fan_b), hebb0=_array(hebb0),
            elig0=_array(elig0), **options)
        ctx.run = run
        ctx.save_for_backward(w_h, alpha, eta, m, m_bias, fan_w, fan_b)
        ctx.set_materialize_grads(False)
        outputs = tuple(torch.from_numpy(a) for a in (hs, c, hebb, elig))
        for out in outputs[2:]:
            if out.numel() == 0:
                ctx.mark_non_differentiable(out)
        return outputs

    @staticmethod
    def backward(ctx, g_hs, g_c, g_hebb, g_elig):
        w_h, alpha, eta, m, m_bias, fan_w, fan_b = ctx.saved_tensors
        hidden, b, t = ctx.run.shape
        if g_hs is None:
            g_hs = torch.zeros(t, b, hidden, dtype=w_h.dtype)

        def contiguous(g):
            return None if g is None or g.numel() == 0 else _array(g.contiguous())

        g = ctx.run.backward(
            _array(g_hs.contiguous()), _weights(w_h, alpha, eta, m, m_bias, fan_w, fan_b),
            gc=contiguous(g_c), ghebb=contiguous(g_hebb), gelig=contiguous(g_elig))
        keys = (None, "xproj", "h0", "c0", "hebb0", "elig0", "w_h", "alpha", "eta", "m", "m_bias",
                "fan_w", "fan_b")
        return _input_grads(ctx.needs_input_grad, g, keys, dict(eta=eta, m_bias=m_bias))


class PlasticLSTM(nn.Module):
    """An LSTM whose cell candidate has plastic recurrent weights (Miconi et al., ICLR 2019,
    section 4.3), run by the Rust engine (``plasticity.reference.plastic_lstm`` has the step).

    Args:
        input_size: ``D``, the features of each input step.
        hidden_size: ``H``.
        plasticity: None (a standard LSTM), ``"hebb"`` (a decaying Hebbian trace with a learned
            rate ``eta``), ``"simple"`` or ``"retroactive"`` (neuromodulated, fanned out per
            neuron: ``eta_j = v_j M + b_j``, ``M = tanh(m . h' + m_b)``).
        alpha: ``"per_neuron"`` (``[H]``, the paper's), ``"per_connection"`` (``[H, H]``) or
            ``"scalar"`` (``[1]``).
        clip: the trace is clipped to ``[-clip, clip]`` after every update (the paper: 2).
        learn_eta: whether ``eta`` is trained.
        eta_init: the initial ``eta`` (``eta_E`` with retroactive modulation).

    Parameters: ``input`` (``nn.Linear(D, 4H)``: ``W_x`` and ``b``, gates ``i, f, o, g``),
    ``w_h: [H, 4H]``, and as the kind has them ``alpha``, ``eta: [1]``, ``m: [H]``,
    ``m_bias: [1]``, ``fan_w: [H]``, ``fan_b: [H]``. ``input``, ``w_h``, ``alpha`` and ``m`` start
    as ``U(-1/sqrt(H), 1/sqrt(H))``, ``fan_w`` as ``U(-1, 1)``, the biases ``m_b, b`` at 0.

    Call: ``hs, state = lstm(x, state=None)`` with ``x: [B, T, D]`` (batch first); returns
    ``hs: [B, T, H]`` and the :class:`LstmState` after the last step.
    """

    def __init__(self, input_size: int, hidden_size: int, plasticity: Optional[str] = "hebb",
                 alpha: str = "per_neuron", clip: float = 2.0, learn_eta: bool = True,
                 eta_init: float = 0.1):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        _choice("plasticity", plasticity, LSTM_PLASTICITY)
        _choice("alpha", alpha, ALPHAS)
        if not (isinstance(clip, (int, float)) and 0 < clip < float("inf")):
            raise ValueError(f"clip: expected a positive finite number, got {clip!r}")
        h = hidden_size
        self.input_size, self.hidden_size = input_size, h
        self.plasticity, self.alpha_shape, self.clip = plasticity, alpha, float(clip)
        bound = 1.0 / h ** 0.5
        self.input = nn.Linear(input_size, 4 * h)
        nn.init.uniform_(self.input.weight, -bound, bound)
        nn.init.uniform_(self.input.bias, -bound, bound)
        self.w_h = nn.Parameter(torch.empty(h, 4 * h).uniform_(-bound, bound))
        if plasticity is not None:
            self.alpha = nn.Parameter(torch.empty(*_alpha_dims(alpha, h)).uniform_(-bound, bound))
        if plasticity in ("hebb", "retroactive"):
            _add_eta(self, eta_init, learn_eta)
        if plasticity in ("simple", "retroactive"):
            _add_modulator(self, h, fan_out=True)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"plasticity={self.plasticity!r}, alpha={self.alpha_shape!r}, clip={self.clip}")

    def forward(self, x: Tensor, state: Optional[LstmState] = None
                ) -> Tuple[Tensor, LstmState]:
        """``x: [B, T, D]`` -> ``(hs: [B, T, H], state)``; ``state`` None starts from zeros."""
        h, dtype = self.hidden_size, self.w_h.dtype
        _check_input(x, self.input_size, dtype, "D")
        b = x.shape[0]
        plastic, retro = self.plasticity is not None, self.plasticity == "retroactive"
        if state is None:
            h0, c0 = torch.zeros(b, h, dtype=dtype), torch.zeros(b, h, dtype=dtype)
            hebb0 = elig0 = None
        else:
            if not isinstance(state, tuple) or len(state) != 4:
                raise TypeError(f"state: expected an LstmState (h, c, hebb, elig), got "
                                f"{type(state).__name__}")
            h0, c0, hebb0, elig0 = state
            _check("state.h", h0, (b, h), dtype)
            _check("state.c", c0, (b, h), dtype)
            for name, t, wanted in (("state.hebb", hebb0, plastic), ("state.elig", elig0, retro)):
                if wanted:
                    _check(name, t, (b, h, h), dtype)
                elif t is not None:
                    raise ValueError(f"{name}: plasticity {self.plasticity!r} has no such "
                                     f"trace; expected None")
        xproj = self.input(x).transpose(0, 1).contiguous()  # [T, B, 4H]
        options = dict(plasticity=self.plasticity, alpha_shape=self.alpha_shape, clip=self.clip)
        hs, c, hebb, elig = _PlasticLstmRun.apply(
            options, xproj, h0, c0, hebb0, elig0, self.w_h, getattr(self, "alpha", None),
            getattr(self, "eta", None), *_modulator_of(self).values())
        state = LstmState(hs[-1], c, hebb if plastic else None, elig if retro else None)
        return hs.transpose(0, 1), state
