//! The plastic episode on one GPU: forward and backward (BPTT) for every trace rule, with the
//! activities, the modulator and the traces' checkpoints kept on the device from the forward
//! to the backward.
//!
//! Forward, per step `t` (3 launches at most): `forward_step` (the plastic product and the
//! nonlinearity), `modulator` (modulated rules), `update_trace` (in place; `Hebb_t` and `E_t`
//! are copied to a checkpoint first every `K` steps, [`layout::segment`]).
//!
//! Backward, per step `t` from `T - 1` down: the segment's traces are recomputed from its
//! checkpoint when the step enters a new segment (copy + `update_trace` per step), then
//! `pass_a` (column sums), `rule_backprop` (the rule's share of `dL/dy_t`, `P_t`, `dL/dx_t`),
//! `pass_b` (rows: `dL/dy_{t-1}`, `dL/dalpha`, `dL/dHebb_t`, `dL/dE_t`); at the end one
//! `grad_w` launch. The host sums the rule's per-step scalars ([`layout::rule_grads`]).
//! Device memory: `O((T/K + K) B N^2 + T B N)`, `K = ceil(sqrt(T))`.

use crate::compile::{self, CompileError, EPISODE};
use crate::discovery::{self, Library, Missing};
use crate::layout::{self, RuleArgs, RuleParams, RuleSums, Transfers};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DriverError,
    LaunchArgs, PushKernelArg,
};
use plasticity_kernels::{EpisodeSpec, Grads, InputMode, PlasticGrads, Traces};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Why the CUDA engine could not run.
#[derive(Debug)]
pub enum Error {
    /// A library is missing.
    Missing(Missing),
    /// A kernel did not compile.
    Compile(CompileError),
    /// No such device.
    NoDevice(String),
    /// The driver reported an error.
    Driver(String),
    /// The inputs do not fit the spec.
    Spec(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(m) => m.fmt(f),
            Error::Compile(c) => c.fmt(f),
            Error::NoDevice(s) | Error::Driver(s) | Error::Spec(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<DriverError> for Error {
    fn from(e: DriverError) -> Self {
        Error::Driver(format!("CUDA driver: {e:?}"))
    }
}

/// The number of CUDA devices (loads the driver first).
pub fn device_count() -> Result<usize, Error> {
    discovery::load(Library::Driver).map_err(Error::Missing)?;
    Ok(CudaContext::device_count()?.max(0) as usize)
}

/// PTX per compute capability, compiled once per process.
fn ptx_for(arch: (i32, i32)) -> Result<String, Error> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().expect("PTX cache").get(&arch) {
        return Ok(p.clone());
    }
    // An NVRTC older than the device does not know its architecture: its newest PTX is then
    // compiled for the device by the driver.
    let ptx = match compile::compile(&EPISODE, Some(arch)) {
        Ok(p) => p,
        Err(CompileError::Rejected { .. }) => {
            compile::compile(&EPISODE, None).map_err(Error::Compile)?
        }
        Err(e) => return Err(Error::Compile(e)),
    };
    let text = ptx.to_src();
    cache.lock().expect("PTX cache").insert(arch, text.clone());
    Ok(text)
}

/// The episode's kernels, loaded on one device.
#[derive(Debug)]
struct Kernels {
    forward_step: CudaFunction,
    modulator: CudaFunction,
    update_trace: CudaFunction,
    pass_a: CudaFunction,
    rule_backprop: CudaFunction,
    pass_b: CudaFunction,
    grad_w: CudaFunction,
}

/// One CUDA device with the episode's kernels loaded.
#[derive(Debug)]
pub struct Engine {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    name: String,
    ordinal: usize,
    to_device: AtomicU64,
    to_host: AtomicU64,
}

/// A rule's parameters on the device, uploaded once: `w: [N, N]`, `alpha` (its shape), the
/// modulator's `m, fan_w, fan_b: [N]` (one unread zero each when absent) and the scalars.
#[derive(Debug)]
pub(crate) struct DeviceParams {
    pub(crate) spec: EpisodeSpec,
    pub(crate) args: RuleArgs,
    w: CudaSlice<f32>,
    alpha: CudaSlice<f32>,
    m: CudaSlice<f32>,
    fan_w: CudaSlice<f32>,
    fan_b: CudaSlice<f32>,
}

/// What an episode keeps on the device for its backward.
#[derive(Debug)]
pub struct DeviceEpisode {
    params: DeviceParams,
    segment: usize,
    x: CudaSlice<f32>,
    y0: CudaSlice<f32>,
    ys: CudaSlice<f32>,
    modulator: CudaSlice<f32>,
    checkpoints_h: CudaSlice<f32>,
    checkpoints_e: CudaSlice<f32>,
    /// `ys` and the modulator on the host (the forward's outputs), for the rule's sums.
    ys_host: Vec<f32>,
    modulator_host: Vec<f32>,
}

impl DeviceEpisode {
    /// The spec the episode ran with.
    pub fn spec(&self) -> &EpisodeSpec {
        &self.params.spec
    }
}

/// What a forward returns: `ys: [T, B, N]`, the final traces `hebb, elig: [B, N, N]` (`elig`
/// empty unless retroactive, both empty without plasticity), the modulator `[T, B]` (empty
/// without modulation), as the CPU engine's [`plasticity_kernels::Episode`] holds them.
#[derive(Clone, Debug)]
pub struct Forward {
    /// `ys: [T, B, N]`.
    pub ys: Vec<f32>,
    /// `Hebb_T, E_T: [B, N, N]`.
    pub traces: Traces<f32>,
    /// `M: [T, B]`.
    pub modulator: Vec<f32>,
}

/// `len` values of a buffer, at least one (a kernel's unused pointer still needs memory).
fn at_least_one(len: usize) -> usize {
    len.max(1)
}

/// An error naming `what` unless `got == want` values.
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Spec(format!(
            "{what}: expected {want} values, got {got}"
        )))
    }
}

impl Engine {
    /// Opens device `ordinal`: finds and loads the driver and NVRTC, compiles the kernels
    /// (once per compute capability per process) and loads them.
    pub fn new(ordinal: usize) -> Result<Engine, Error> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(Error::NoDevice(format!(
                "CUDA device {ordinal} does not exist ({count} device(s) found)"
            )));
        }
        discovery::load(Library::Nvrtc).map_err(Error::Missing)?;
        let ctx = CudaContext::new(ordinal)?;
        // SAFETY: the engine uses one stream, the context's default stream, for every buffer
        // and launch, so the stream orders all accesses without cudarc's per-buffer events.
        unsafe { ctx.disable_event_tracking() };
        let arch = ctx.compute_capability()?;
        let ptx = ptx_for(arch)?;
        let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx))?;
        let f = |name: &str| module.load_function(name);
        let kernels = Kernels {
            forward_step: f("forward_step")?,
            modulator: f("modulator")?,
            update_trace: f("update_trace")?,
            pass_a: f("pass_a")?,
            rule_backprop: f("rule_backprop")?,
            pass_b: f("pass_b")?,
            grad_w: f("grad_w")?,
        };
        let name = format!("{} (compute {}.{})", ctx.name()?, arch.0, arch.1);
        Ok(Engine {
            stream: ctx.default_stream(),
            kernels,
            name,
            ordinal,
            to_device: AtomicU64::new(0),
            to_host: AtomicU64::new(0),
        })
    }

    /// The device's name and compute capability.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's index.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Bytes copied over the bus so far by this engine.
    pub fn transferred(&self) -> Transfers {
        Transfers {
            to_device: self.to_device.load(Ordering::Relaxed),
            to_host: self.to_host.load(Ordering::Relaxed),
        }
    }

    /// Copies `v` to the device (one zero when empty).
    pub(crate) fn up(&self, v: &[f32]) -> Result<CudaSlice<f32>, Error> {
        if v.is_empty() {
            return Ok(self.stream.alloc_zeros::<f32>(1)?);
        }
        self.to_device
            .fetch_add(4 * v.len() as u64, Ordering::Relaxed);
        Ok(self.stream.clone_htod(v)?)
    }

    /// Copies `v` into the device buffer `dst` (at least `v.len()` values).
    pub(crate) fn up_into(&self, v: &[f32], dst: &mut CudaSlice<f32>) -> Result<(), Error> {
        self.to_device
            .fetch_add(4 * v.len() as u64, Ordering::Relaxed);
        Ok(self.stream.memcpy_htod(v, dst)?)
    }

    /// `len` zeros on the device (one at least).
    pub(crate) fn zeros(&self, len: usize) -> Result<CudaSlice<f32>, Error> {
        Ok(self.stream.alloc_zeros::<f32>(at_least_one(len))?)
    }

    /// The first `len` values of `s` on the host (nothing when `len` is 0).
    pub(crate) fn down(&self, s: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>, Error> {
        let mut v = vec![0.0; len];
        self.down_into(s, &mut v)?;
        Ok(v)
    }

    /// Copies the first `dst.len()` values of `s` into `dst` (nothing when empty).
    pub(crate) fn down_into(&self, s: &CudaSlice<f32>, dst: &mut [f32]) -> Result<(), Error> {
        if dst.is_empty() {
            return Ok(());
        }
        self.to_host
            .fetch_add(4 * dst.len() as u64, Ordering::Relaxed);
        self.stream.memcpy_dtoh(&s.slice(..dst.len()), dst)?;
        // The copy is asynchronous: wait for it before the host reads `dst`.
        self.stream.synchronize()?;
        Ok(())
    }

    /// Uploads the rule's parameters for `spec` (after checking their sizes).
    pub(crate) fn upload(
        &self,
        spec: &EpisodeSpec,
        p: &RuleParams<'_>,
    ) -> Result<DeviceParams, Error> {
        layout::check(spec, p).map_err(Error::Spec)?;
        let modulator = p.modulator();
        let (m, fan_w, fan_b) = (modulator.m, modulator.fan_w, modulator.fan_b);
        Ok(DeviceParams {
            spec: *spec,
            args: RuleArgs::new(spec, p),
            w: self.up(p.w())?,
            alpha: self.up(p.alpha())?,
            m: self.up(m)?,
            fan_w: self.up(fan_w)?,
            fan_b: self.up(fan_b)?,
        })
    }

    /// The initial traces `(Hebb_0, E_0): [B, N, N]` on the device: as given, or zeros (one
    /// unread zero for a trace the rule does not keep).
    pub(crate) fn initial_traces(
        &self,
        p: &DeviceParams,
        h0: Option<&[f32]>,
        e0: Option<&[f32]>,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>), Error> {
        let bnn = p.spec.batch * p.spec.neurons * p.spec.neurons;
        let trace = |given: Option<&[f32]>, kept: bool, what: &str| match given.filter(|_| kept) {
            Some(v) => {
                check_len(what, v.len(), bnn)?;
                self.up(v)
            }
            None => self.zeros(if kept { bnn } else { 0 }),
        };
        Ok((
            trace(h0, p.args.plastic(), "hebb0")?,
            trace(e0, p.args.eligibility(), "elig0")?,
        ))
    }

    /// A launch of `f` whose first arguments are the rule's scalars, `fan_w` and `fan_b` (the
    /// trace kernels' common head).
    fn rule_launch<'a>(&'a self, f: &'a CudaFunction, p: &'a DeviceParams) -> LaunchArgs<'a> {
        let mut l = self.stream.launch_builder(f);
        l.arg(&p.args).arg(&p.fan_w).arg(&p.fan_b);
        l
    }

    /// One `forward_step` launch: `y = f((w + alpha Hebb) y_pre + x)`, `[B, N]` each.
    pub(crate) fn forward_step(
        &self,
        p: &DeviceParams,
        hebb: &CudaView<'_, f32>,
        (ypre, x): (&CudaView<'_, f32>, &CudaView<'_, f32>),
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), Error> {
        let clamped = i32::from(p.spec.input == InputMode::Clamped);
        let mut l = self.stream.launch_builder(&self.kernels.forward_step);
        l.arg(&p.args)
            .arg(&p.w)
            .arg(&p.alpha)
            .arg(hebb)
            .arg(ypre)
            .arg(x)
            .arg(y)
            .arg(&clamped);
        // SAFETY: the arguments match `forward_step`'s parameters; the geometry is
        // `layout::columns`, the buffers hold what the kernel reads.
        unsafe { l.launch(layout::columns(p.spec.neurons, p.spec.batch).config()) }?;
        Ok(())
    }

    /// One `modulator` launch: `M = tanh(m . y + m_b)`, `y: [B, N]`, `M: [B]`.
    pub(crate) fn modulator(
        &self,
        p: &DeviceParams,
        y: &CudaView<'_, f32>,
        mt: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), Error> {
        let mut l = self.stream.launch_builder(&self.kernels.modulator);
        l.arg(&p.args).arg(&p.m).arg(y).arg(mt);
        // SAFETY: as in `forward_step`; `layout::per_episode`.
        unsafe { l.launch(layout::per_episode(p.spec.batch).config()) }?;
        Ok(())
    }

    /// Runs an episode forward. Shapes as the CPU engine's ([`plasticity_kernels::forward`]):
    /// `x: [T, B, N]`, `y0: [B, N]`, `h0, e0: [B, N, N]` (`None`: zeros; `e0` only read by
    /// retroactive modulation).
    pub fn forward(
        &self,
        spec: &EpisodeSpec,
        p: &RuleParams<'_>,
        x: &[f32],
        y0: &[f32],
        h0: Option<&[f32]>,
        e0: Option<&[f32]>,
    ) -> Result<(Forward, DeviceEpisode), Error> {
        let params = self.upload(spec, p)?;
        let args = params.args;
        let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
        let (bn, bnn) = (b * n, b * n * n);
        check_len("x", x.len(), t_len * bn)?;
        check_len("y0", y0.len(), bn)?;
        let (mut h, mut e) = self.initial_traces(&params, h0, e0)?;
        let segment = layout::segment(spec);
        let stored = layout::checkpoints(t_len, segment);
        let mut ep = DeviceEpisode {
            params,
            segment,
            x: self.up(x)?,
            y0: self.up(y0)?,
            ys: self.zeros(t_len * bn)?,
            modulator: self.zeros(if args.modulated() { t_len * b } else { 0 })?,
            checkpoints_h: self.zeros(if args.plastic() { stored * bnn } else { 0 })?,
            checkpoints_e: self.zeros(if args.eligibility() { stored * bnn } else { 0 })?,
            ys_host: Vec::new(),
            modulator_host: Vec::new(),
        };
        for t in 0..t_len {
            if args.plastic() && t % segment == 0 {
                let s = t / segment;
                self.stream
                    .memcpy_dtod(&h, &mut ep.checkpoints_h.slice_mut(s * bnn..(s + 1) * bnn))?;
                if args.eligibility() {
                    self.stream
                        .memcpy_dtod(&e, &mut ep.checkpoints_e.slice_mut(s * bnn..(s + 1) * bnn))?;
                }
            }
            {
                let (done, mut rest) = ep.ys.split_at_mut(t * bn);
                let ypre: CudaView<'_, f32> = if t == 0 {
                    ep.y0.slice(..)
                } else {
                    done.slice((t - 1) * bn..)
                };
                let xt = ep.x.slice(t * bn..(t + 1) * bn);
                let mut yt = rest.slice_mut(..bn);
                self.forward_step(&ep.params, &h.slice(..), (&ypre, &xt), &mut yt)?;
            }
            let yt = ep.ys.slice(t * bn..(t + 1) * bn);
            if args.modulated() {
                let mut mt = ep.modulator.slice_mut(t * b..(t + 1) * b);
                self.modulator(&ep.params, &yt, &mut mt)?;
            }
            if args.plastic() {
                let ypre = if t == 0 {
                    ep.y0.slice(..)
                } else {
                    ep.ys.slice((t - 1) * bn..t * bn)
                };
                let mt = step_view(&ep.modulator, args.modulated(), t, b);
                let traces = (&mut h.slice_mut(..), &mut e.slice_mut(..));
                self.update_trace(&ep.params, traces, (&ypre, &yt), &mt)?;
            }
        }
        let ys = self.down(&ep.ys, t_len * bn)?;
        let modulator = self.down(&ep.modulator, if args.modulated() { t_len * b } else { 0 })?;
        let out = Forward {
            traces: Traces {
                hebb: self.down(&h, if args.plastic() { bnn } else { 0 })?,
                elig: self.down(&e, if args.eligibility() { bnn } else { 0 })?,
            },
            ys: ys.clone(),
            modulator: modulator.clone(),
        };
        ep.ys_host = ys;
        ep.modulator_host = modulator;
        Ok((out, ep))
    }

    /// One `update_trace` launch on `traces = (Hebb, E)` in place, from `(y_{t-1}, y_t)` and
    /// the step's modulator `mt`.
    pub(crate) fn update_trace(
        &self,
        p: &DeviceParams,
        traces: (&mut CudaViewMut<'_, f32>, &mut CudaViewMut<'_, f32>),
        (ypre, ypost): (&CudaView<'_, f32>, &CudaView<'_, f32>),
        mt: &CudaView<'_, f32>,
    ) -> Result<(), Error> {
        let (n, b) = (p.spec.neurons, p.spec.batch);
        let batch = b as i32;
        let mut l = self.rule_launch(&self.kernels.update_trace, p);
        l.arg(traces.0)
            .arg(traces.1)
            .arg(ypre)
            .arg(ypost)
            .arg(mt)
            .arg(&batch);
        // SAFETY: the arguments match `update_trace`'s parameters; the geometry is
        // `layout::entries`, the buffers hold what the kernel reads.
        unsafe { l.launch(layout::entries(n, b).config()) }?;
        Ok(())
    }

    /// The backward of [`Engine::forward`] from `gy = dL/dys: [T, B, N]`; the gradients of the
    /// final traces are taken as zero (as the episode op's). Returns the CPU engine's
    /// [`Grads`] (`reversal_rejected` false: the GPU always recomputes from checkpoints).
    pub fn backward(&self, ep: DeviceEpisode, gy: &[f32]) -> Result<Grads<f32>, Error> {
        let spec = ep.params.spec;
        let args = ep.params.args;
        let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
        let (bn, bnn) = (b * n, b * n * n);
        if gy.len() != t_len * bn {
            return Err(Error::Spec(format!(
                "grad of ys: expected {} values, got {}",
                t_len * bn,
                gy.len()
            )));
        }
        let (plastic, elig, modulated) = (args.plastic(), args.eligibility(), args.modulated());
        let gy = self.up(gy)?;
        let mut g = self.zeros(if plastic { bnn } else { 0 })?;
        let mut ge = self.zeros(if elig { bnn } else { 0 })?;
        let mut galpha = self.zeros(if plastic { n * n } else { 0 })?;
        let mut sums = self.zeros(5 * bn)?;
        let mut carry = self.zeros(bn)?;
        let mut phat = self.zeros(t_len * bn)?;
        let mut gx = self.zeros(t_len * bn)?;
        let mut geta = self.zeros(if modulated { t_len * bn } else { 0 })?;
        let mut gq = self.zeros(t_len * b)?;
        let mut scal = self.zeros(t_len * b)?;
        let k = ep.segment;
        let mut seg_h = self.zeros(if plastic { k * bnn } else { 0 })?;
        let mut seg_e = self.zeros(if elig { k * bnn } else { 0 })?;
        let mut loaded: Option<usize> = None;
        let clamped = i32::from(spec.input == InputMode::Clamped);
        let batch = b as i32;
        let kern = &self.kernels;
        let y_pre = |t: usize| -> CudaView<'_, f32> {
            if t == 0 {
                ep.y0.slice(..)
            } else {
                ep.ys.slice((t - 1) * bn..t * bn)
            }
        };
        let y_at = |t: usize| ep.ys.slice(t * bn..(t + 1) * bn);
        for t in (0..t_len).rev() {
            let s = t / k;
            if plastic && loaded != Some(s) {
                // Recompute Hebb_{sK .. t} (and E) from the segment's checkpoint.
                self.stream.memcpy_dtod(
                    &ep.checkpoints_h.slice(s * bnn..(s + 1) * bnn),
                    &mut seg_h.slice_mut(..bnn),
                )?;
                if elig {
                    self.stream.memcpy_dtod(
                        &ep.checkpoints_e.slice(s * bnn..(s + 1) * bnn),
                        &mut seg_e.slice_mut(..bnn),
                    )?;
                }
                for r in 1..=(t - s * k) {
                    let step = s * k + r - 1;
                    let (before, mut after) = seg_h.split_at_mut(r * bnn);
                    self.stream
                        .memcpy_dtod(&before.slice((r - 1) * bnn..), &mut after.slice_mut(..bnn))?;
                    let mut hr = after.slice_mut(..bnn);
                    let (before_e, mut after_e) =
                        seg_e.split_at_mut(if elig { r * bnn } else { 0 });
                    if elig {
                        self.stream.memcpy_dtod(
                            &before_e.slice((r - 1) * bnn..),
                            &mut after_e.slice_mut(..bnn),
                        )?;
                    }
                    let mut er = after_e.slice_mut(..if elig { bnn } else { 1 });
                    let (ypre, ypost) = (y_pre(step), y_at(step));
                    let mt = step_view(&ep.modulator, modulated, step, b);
                    self.update_trace(&ep.params, (&mut hr, &mut er), (&ypre, &ypost), &mt)?;
                }
                loaded = Some(s);
            }
            let r = t - s * k;
            let ht = if plastic {
                seg_h.slice(r * bnn..(r + 1) * bnn)
            } else {
                seg_h.slice(..)
            };
            let et = if elig {
                seg_e.slice(r * bnn..(r + 1) * bnn)
            } else {
                seg_e.slice(..)
            };
            let (ypre, ypost) = (y_pre(t), y_at(t));
            let mt = step_view(&ep.modulator, modulated, t, b);
            if plastic {
                let mut l = self.rule_launch(&kern.pass_a, &ep.params);
                l.arg(&ht)
                    .arg(&et)
                    .arg(&g)
                    .arg(&ge)
                    .arg(&ypre)
                    .arg(&ypost)
                    .arg(&mt)
                    .arg(&mut sums)
                    .arg(&batch);
                // SAFETY: as in the forward; `layout::columns`.
                unsafe { l.launch(layout::columns(n, b).config()) }?;
            }
            {
                let gyt = gy.slice(t * bn..(t + 1) * bn);
                let xt = ep.x.slice(t * bn..(t + 1) * bn);
                let mut pt = phat.slice_mut(t * bn..(t + 1) * bn);
                let mut gxt = gx.slice_mut(t * bn..(t + 1) * bn);
                let mut getat = if modulated {
                    geta.slice_mut(t * bn..(t + 1) * bn)
                } else {
                    geta.slice_mut(..)
                };
                let mut gqt = gq.slice_mut(t * b..(t + 1) * b);
                let mut scalt = scal.slice_mut(t * b..(t + 1) * b);
                let mut l = self.stream.launch_builder(&kern.rule_backprop);
                l.arg(&args)
                    .arg(&ep.params.m)
                    .arg(&ep.params.fan_w)
                    .arg(&ep.params.fan_b)
                    .arg(&sums)
                    .arg(&gyt)
                    .arg(&carry)
                    .arg(&ypost)
                    .arg(&mt)
                    .arg(&xt)
                    .arg(&clamped)
                    .arg(&mut pt)
                    .arg(&mut gxt)
                    .arg(&mut getat)
                    .arg(&mut gqt)
                    .arg(&mut scalt)
                    .arg(&batch);
                // SAFETY: as in the forward; `layout::per_episode`.
                unsafe { l.launch(layout::per_episode(b).config()) }?;
            }
            let pt = phat.slice(t * bn..(t + 1) * bn);
            let mut l = self.rule_launch(&kern.pass_b, &ep.params);
            l.arg(&ep.params.w)
                .arg(&ep.params.alpha)
                .arg(&ht)
                .arg(&et)
                .arg(&mut g)
                .arg(&mut ge)
                .arg(&mut galpha)
                .arg(&ypre)
                .arg(&ypost)
                .arg(&mt)
                .arg(&pt)
                .arg(&mut carry)
                .arg(&batch);
            // SAFETY: as in the forward; `layout::rows`.
            unsafe { l.launch(layout::rows(n).config()) }?;
        }
        let mut gw = self.zeros(n * n)?;
        {
            let (ni, bi, ti) = (n as i32, b as i32, t_len as i32);
            let mut l = self.stream.launch_builder(&kern.grad_w);
            l.arg(&ep.y0)
                .arg(&ep.ys)
                .arg(&phat)
                .arg(&mut gw)
                .arg(&ni)
                .arg(&bi)
                .arg(&ti);
            // SAFETY: as in the forward; `layout::weights`.
            unsafe { l.launch(layout::weights(n).config()) }?;
        }
        let gq = self.down(&gq, t_len * b)?;
        let scal = self.down(&scal, t_len * b)?;
        let geta = self.down(&geta, if modulated { t_len * bn } else { 0 })?;
        let sums = RuleSums {
            gq: &gq,
            scal: &scal,
            geta: &geta,
            modulator: &ep.modulator_host,
            ys: &ep.ys_host,
        };
        let alpha_full = self.down(&galpha, if plastic { n * n } else { 0 })?;
        Ok(Grads {
            w: self.down(&gw, n * n)?,
            plastic: PlasticGrads {
                alpha: if plastic {
                    layout::alpha_grad(&alpha_full, spec.alpha, n)
                } else {
                    Vec::new()
                },
                rule: layout::rule_grads(&args, &sums, n),
                hebb0: self.down(&g, if plastic { bnn } else { 0 })?,
                elig0: self.down(&ge, if elig { bnn } else { 0 })?,
            },
            x: self.down(&gx, t_len * bn)?,
            y0: self.down(&carry, bn)?,
            reversal_rejected: false,
        })
    }
}

/// Step `t`'s `[B]` values of the modulator, or the whole (unread) buffer without modulation.
fn step_view(s: &CudaSlice<f32>, modulated: bool, t: usize, b: usize) -> CudaView<'_, f32> {
    if modulated {
        s.slice(t * b..(t + 1) * b)
    } else {
        s.slice(..)
    }
}
