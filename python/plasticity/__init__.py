"""Differentiable plasticity (Miconi, Clune & Stanley, ICML 2018; Miconi et al., ICLR 2019) on
the Rust engine of the `plasticity` project.

- :mod:`plasticity.torch`: PyTorch layers, :class:`plasticity.torch.PlasticRNN`.
- :mod:`plasticity.reference`: the same equations in plain PyTorch ops (slow, for checks).
- ``plasticity._engine``: the compiled engine (numpy arrays in, numpy arrays out).

``plasticity.torch`` imports torch; this package itself needs only numpy.
"""

from ._engine import __version__

__all__ = ["__version__"]
