//! The parameters of a trace rule, shared by the plastic RNN and the plastic LSTM ops: how they
//! are packed ([`RuleInputs`]), handed to the kernels, and differentiated.

use super::device::{data, scalar};
use super::op_tensors;
use burn::tensor::TensorData;
use plasticity_kernels as kernels;

op_tensors!(
    /// The parameters of a trace rule, shared by the plastic RNN and the plastic LSTM:
    /// `alpha: [N, N] | [1, N] | [1, 1]` (as the spec's `alpha`), the fixed rate `eta: [1]`
    /// (decaying Hebb, Oja; ICML 2018 eq. 2-3) or the modulator `m: [N]`, `m_bias: [1]`,
    /// fan-out `fan_w, fan_b: [N]` and eligibility rate `eta_e: [1]` (ICLR 2019 eq. 4-6). Empty
    /// where the rule does not use them.
    RuleInputs { alpha, eta, m, m_bias, fan_w, fan_b, eta_e }
);

impl RuleInputs<super::Input> {
    /// No rule parameters (the network without plasticity); with struct update, the ones a
    /// rule does not use.
    pub(crate) fn none() -> Self {
        use super::Input::Empty;
        RuleInputs {
            alpha: Empty,
            eta: Empty,
            m: Empty,
            m_bias: Empty,
            fan_w: Empty,
            fan_b: Empty,
            eta_e: Empty,
        }
    }
}

impl RuleInputs<Vec<f32>> {
    /// The modulator's parameters (empty or 0 where the rule has none).
    fn modulator(&self) -> kernels::ModulatorParams<'_, f32> {
        kernels::ModulatorParams {
            m: &self.m,
            m_bias: scalar(&self.m_bias),
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: scalar(&self.eta_e),
        }
    }

    /// The plastic RNN's parameters of a rule modulated as `modulation` says: a fixed-rate
    /// rule's (decaying Hebb, Oja) or a neuromodulated one's.
    pub(crate) fn rnn<'a>(
        &'a self,
        w: &'a [f32],
        modulation: kernels::Modulation,
    ) -> kernels::RuleParams<'a, f32> {
        let eta = scalar(&self.eta);
        kernels::RuleParams::new(modulation, w, &self.alpha, eta, self.modulator())
    }

    /// Any rule's parameters for the plastic LSTM: the modulated ones and `eta`.
    pub(crate) fn lstm<'a>(&'a self, w_h: &'a [f32]) -> kernels::LstmParams<'a, f32> {
        kernels::LstmParams {
            w_h,
            alpha: &self.alpha,
            eta: scalar(&self.eta),
            modulator: self.modulator(),
        }
    }
}

impl RuleInputs<TensorData> {
    /// The gradients of a rule's parameters as tensor data, from the kernels' gradients
    /// `dL/dalpha` and the rule's (those of the plastic RNN and of the plastic LSTM alike), with
    /// the dims of `alpha`.
    pub(crate) fn grads(
        alpha: Vec<f32>,
        rule: kernels::RuleGrads<f32>,
        alpha_dims: [usize; 2],
    ) -> Self {
        let md = rule.modulator;
        let (m, fan) = (md.m.len(), md.fan_w.len());
        RuleInputs {
            alpha: data(alpha, alpha_dims),
            eta: data(vec![rule.eta], [1]),
            m: data(md.m, [m]),
            m_bias: data(vec![md.m_bias], [1]),
            fan_w: data(md.fan_w, [fan]),
            fan_b: data(md.fan_b, [fan]),
            eta_e: data(vec![md.eta_e], [1]),
        }
    }
}
