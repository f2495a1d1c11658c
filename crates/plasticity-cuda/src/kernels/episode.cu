// The plastic episode on an NVIDIA GPU: the maths of plasticity-kernels' engine
// (crates/plasticity-kernels/src/rnn, trace.rs; docs/engine.md), one kernel per pass.
//
// Layouts (row-major, f32): w [N, N] (w[i * N + j] from neuron i to neuron j); alpha [N, N],
// [N] or [1] (RuleArgs.alpha_kind); activities [B, N] per step; traces Hebb, E [B, N, N];
// the modulator M [B] per step. A trace entry's update is affine (docs/engine.md):
//   Hebb'_ij = clip(A_j Hebb_ij + u_i v_j)                          no eligibility trace
//   Hebb'_ij = clip(Hebb_ij + rate_j E_ij),  E'_ij = d E_ij + u_i v_j  retroactive
// Compiled at run time by NVRTC (no headers, no C++ library): plain C with extern "C" names.

#define RULE_NONE 0
#define RULE_DECAYING 1
#define RULE_OJA 2
#define RULE_SIMPLE 3
#define RULE_RETROACTIVE 4

#define ALPHA_PER_CONNECTION 0
#define ALPHA_PER_NEURON 1
#define ALPHA_SCALAR 2

// Columns per block and row slices of the column-sum kernels (forward product, pass A).
#define COLS 32
#define SLICES 8
// Threads of the row and per-episode kernels (a power of two: tree reductions).
#define THREADS 256

// The rule's scalars, passed by value; the Rust side (src/layout.rs, RuleArgs) has the same
// eight 4-byte fields in this order.
struct RuleArgs {
    float eta;      // fixed rate (decaying, Oja)
    float eta_e;    // eligibility-trace rate (retroactive)
    float clip;     // clip bound c; INFINITY without clipping
    float m_bias;   // modulator bias
    int kind;       // RULE_*
    int alpha_kind; // ALPHA_*
    int fan_out;    // 1: rate_j = v_j M + b_j; 0: rate_j = M
    int n;          // neurons N
};
typedef char rule_args_is_32_bytes[(sizeof(struct RuleArgs) == 32) ? 1 : -1];

// One column's coefficients of a step: A_j, v_j and the modulated rate_j.
struct Column {
    float a;
    float v;
    float rate;
};

__device__ __forceinline__ float alpha_at(const float* alpha, int kind, int n, int i, int j) {
    if (kind == ALPHA_PER_CONNECTION) return alpha[(size_t)i * n + j];
    if (kind == ALPHA_PER_NEURON) return alpha[j];
    return alpha[0];
}

__device__ __forceinline__ int modulated(int kind) {
    return kind == RULE_SIMPLE || kind == RULE_RETROACTIVE;
}

// rate_j(t) = M or v_j M + b_j (modulated rules).
__device__ __forceinline__ float rate_at(const struct RuleArgs r, const float* fan_w,
                                         const float* fan_b, float m, int j) {
    return r.fan_out ? fan_w[j] * m + fan_b[j] : m;
}

// A_j, v_j, rate_j of column j from the new activity y'_j and the step's modulator m.
__device__ __forceinline__ struct Column column(const struct RuleArgs r, const float* fan_w,
                                                const float* fan_b, float m, float ypost, int j) {
    struct Column c;
    c.rate = 0.0f;
    if (r.kind == RULE_DECAYING) {
        c.a = 1.0f - r.eta;
        c.v = ypost;
    } else if (r.kind == RULE_OJA) {
        c.a = 1.0f - r.eta * ypost * ypost;
        c.v = r.eta * ypost;
    } else if (r.kind == RULE_SIMPLE) {
        c.rate = rate_at(r, fan_w, fan_b, m, j);
        c.a = 1.0f;
        c.v = c.rate * ypost;
    } else if (r.kind == RULE_RETROACTIVE) {
        c.rate = rate_at(r, fan_w, fan_b, m, j);
        c.a = 1.0f;
        c.v = r.eta_e * ypost;
    } else {
        c.a = 1.0f;
        c.v = 0.0f;
    }
    return c;
}

// u_i from the presynaptic activity y_i.
__device__ __forceinline__ float row_u(const struct RuleArgs r, float ypre) {
    return r.kind == RULE_DECAYING ? r.eta * ypre : ypre;
}

__device__ __forceinline__ float clip_to(float z, float c) {
    return fminf(fmaxf(z, -c), c);
}

// The gradient g through the clip of the pre-clip value z: zero where the clip was active.
__device__ __forceinline__ float through_clip(float z, float c, float g) {
    return fabsf(z) >= c ? 0.0f : g;
}

// Sum of v over the block's THREADS threads (tree order, the same every run); every thread
// gets the total. `buf` holds THREADS floats.
__device__ float block_sum(float v, float* buf) {
    int t = threadIdx.x;
    __syncthreads();
    buf[t] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        __syncthreads();
    }
    return buf[0];
}

// Forward step t: y_t,j = f(sum_i (w_ij + alpha_ij Hebb_t,ij) y_{t-1,i} + x_t,j), with f = tanh
// (additive input) or y = x where x != 0 (clamped input). Without a trace (RULE_NONE) `hebb`
// and `alpha` are not read. Grid (ceil(N / COLS), B), block (COLS, SLICES): a warp reads COLS
// consecutive columns of a row, coalesced.
extern "C" __global__ void forward_step(const struct RuleArgs r, const float* w,
                                        const float* alpha, const float* hebb,
                                        const float* ypre, const float* x, float* y,
                                        int clamped) {
    __shared__ float part[SLICES][COLS + 1];
    int n = r.n;
    int j = blockIdx.x * COLS + threadIdx.x;
    int b = blockIdx.y;
    float acc = 0.0f;
    if (j < n) {
        const float* yb = ypre + (size_t)b * n;
        const float* hb = hebb + (size_t)b * n * n;
        for (int i = threadIdx.y; i < n; i += SLICES) {
            float wij = w[(size_t)i * n + j];
            if (r.kind != RULE_NONE) wij += alpha_at(alpha, r.alpha_kind, n, i, j) * hb[(size_t)i * n + j];
            acc += wij * yb[i];
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
        float pre = 0.0f;
        for (int s = 0; s < SLICES; s++) pre += part[s][threadIdx.x];
        float xj = x[(size_t)b * n + j];
        y[(size_t)b * n + j] = (clamped && xj != 0.0f) ? xj : tanhf(clamped ? pre : pre + xj);
    }
}

// The modulator of step t: M_b = tanh(sum_j m_j y_t,bj + m_b). Grid (B), block (THREADS).
extern "C" __global__ void modulator(const struct RuleArgs r, const float* m, const float* y,
                                     float* out) {
    __shared__ float buf[THREADS];
    int n = r.n;
    int b = blockIdx.x;
    float acc = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) acc += m[j] * y[(size_t)b * n + j];
    float q = block_sum(acc, buf);
    if (threadIdx.x == 0) out[b] = tanhf(q + r.m_bias);
}

// The trace update of step t, in place: Hebb_t -> Hebb_{t+1} (and E_t -> E_{t+1}), from y_{t-1}
// (pre), y_t (post) and the modulator M_t (`mod`, [B]; unread by the fixed-rate rules). `elig`
// is only read and written by the retroactive rule. One thread per entry of [B, N, N],
// grid-stride.
extern "C" __global__ void update_trace(const struct RuleArgs r, const float* fan_w,
                                        const float* fan_b, float* hebb, float* elig,
                                        const float* ypre, const float* ypost, const float* mod,
                                        int batch) {
    int n = r.n;
    size_t nn = (size_t)n * n;
    size_t total = (size_t)batch * nn;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        int b = (int)(k / nn);
        int i = (int)((k / n) % n);
        int j = (int)(k % n);
        float m = modulated(r.kind) ? mod[b] : 0.0f;
        struct Column c = column(r, fan_w, fan_b, m, ypost[(size_t)b * n + j], j);
        float u = row_u(r, ypre[(size_t)b * n + i]);
        float h = hebb[k];
        if (r.kind == RULE_RETROACTIVE) {
            float e = elig[k];
            hebb[k] = clip_to(h + c.rate * e, r.clip);
            elig[k] = (1.0f - r.eta_e) * e + u * c.v;
        } else {
            hebb[k] = clip_to(c.a * h + u * c.v, r.clip);
        }
    }
}

// Pass A of the backward of step t: column sums over i of the trace gradients.
// `g` = dL/dHebb_{t+1}, `ge` = dL/dE_{t+1}; `hebb`, `elig` = Hebb_t, E_t. Writes sums [5, B, N]:
//   0: sum_i Ĝ_ij y_i   1: sum_i Ĝ_ij Hebb_ij   2: sum_i Ĝ_ij E_ij
//   3: sum_i GE_ij y_i  4: sum_i GE_ij E_ij
// (Ĝ: g through the clip). Grid (ceil(N / COLS), B), block (COLS, SLICES).
extern "C" __global__ void pass_a(const struct RuleArgs r, const float* fan_w, const float* fan_b,
                                  const float* hebb, const float* elig, const float* g,
                                  const float* ge, const float* ypre, const float* ypost,
                                  const float* mod, float* sums, int batch) {
    __shared__ float part[3][SLICES][COLS + 1];
    int n = r.n;
    int j = blockIdx.x * COLS + threadIdx.x;
    int b = blockIdx.y;
    int retro = r.kind == RULE_RETROACTIVE;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
    if (j < n) {
        float m = modulated(r.kind) ? mod[b] : 0.0f;
        struct Column c = column(r, fan_w, fan_b, m, ypost[(size_t)b * n + j], j);
        size_t base = (size_t)b * n * n + j;
        for (int i = threadIdx.y; i < n; i += SLICES) {
            size_t k = base + (size_t)i * n;
            float yi = ypre[(size_t)b * n + i];
            float h = hebb[k];
            if (retro) {
                float e = elig[k];
                float gv = through_clip(h + c.rate * e, r.clip, g[k]);
                s0 += gv * e;
                s1 += ge[k] * yi;
                s2 += ge[k] * e;
            } else {
                float gv = through_clip(c.a * h + row_u(r, yi) * c.v, r.clip, g[k]);
                s0 += gv * yi;
                s1 += gv * h;
            }
        }
    }
    part[0][threadIdx.y][threadIdx.x] = s0;
    part[1][threadIdx.y][threadIdx.x] = s1;
    part[2][threadIdx.y][threadIdx.x] = s2;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
        float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f;
        for (int s = 0; s < SLICES; s++) {
            t0 += part[0][s][threadIdx.x];
            t1 += part[1][s][threadIdx.x];
            t2 += part[2][s][threadIdx.x];
        }
        size_t bn = (size_t)batch * n;
        size_t at = (size_t)b * n + j;
        if (retro) {
            sums[at] = 0.0f;
            sums[bn + at] = 0.0f;
            sums[2 * bn + at] = t0;
            sums[3 * bn + at] = t1;
            sums[4 * bn + at] = t2;
        } else {
            sums[at] = t0;
            sums[bn + at] = t1;
            sums[2 * bn + at] = 0.0f;
            sums[3 * bn + at] = 0.0f;
            sums[4 * bn + at] = 0.0f;
        }
    }
}

// The rule's backprop of step t and dL/dpre_t, one block per episode b (grid (B), block
// (THREADS)). yhat_j = gy_t,j + carry_j + the rule's share (the trace's and the modulator's);
// then P_j = yhat_j (1 - y_j^2) and dL/dx_t,j = P_j, or, for a clamped neuron (x != 0),
// P_j = 0 and dL/dx_t,j = yhat_j. Also writes, for the host's final sums over steps and
// episodes: geta [B, N] (dL/drate_j, modulated), gq [B] (dL/dq of M = tanh(q)) and scal [B]
// (this step's share of dL/deta, or of dL/deta_E when retroactive).
extern "C" __global__ void rule_backprop(const struct RuleArgs r, const float* m_w,
                                         const float* fan_w, const float* fan_b,
                                         const float* sums, const float* gy, const float* carry,
                                         const float* ypost, const float* mod, const float* x,
                                         int clamped, float* phat, float* gx, float* geta,
                                         float* gq, float* scal, int batch) {
    __shared__ float buf[THREADS];
    int n = r.n;
    int b = blockIdx.x;
    size_t bn = (size_t)batch * n;
    const float* g_y = sums;
    const float* g_h = sums + bn;
    const float* g_e = sums + 2 * bn;
    const float* ge_y = sums + 3 * bn;
    const float* ge_e = sums + 4 * bn;
    int retro = r.kind == RULE_RETROACTIVE;
    float mt = modulated(r.kind) ? mod[b] : 0.0f;
    // dL/dM through every rate, then dL/dq.
    float gmod_part = 0.0f;
    if (modulated(r.kind)) {
        for (int j = threadIdx.x; j < n; j += THREADS) {
            size_t k = (size_t)b * n + j;
            float ge = retro ? g_e[k] : ypost[k] * g_y[k];
            geta[k] = ge;
            gmod_part += r.fan_out ? fan_w[j] * ge : ge;
        }
    }
    float gmod = block_sum(gmod_part, buf);
    float q = gmod * (1.0f - mt * mt);
    float scal_part = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        size_t k = (size_t)b * n + j;
        float y = ypost[k];
        float yh = gy[k] + carry[k];
        if (r.kind == RULE_DECAYING) {
            scal_part += y * g_y[k] - g_h[k];
            yh += r.eta * g_y[k];
        } else if (r.kind == RULE_OJA) {
            scal_part += y * g_y[k] - y * y * g_h[k];
            yh = yh + r.eta * g_y[k] + -2.0f * r.eta * y * g_h[k];
        } else if (r.kind == RULE_SIMPLE) {
            float rate = rate_at(r, fan_w, fan_b, mt, j);
            yh = yh + q * m_w[j] + rate * g_y[k];
        } else if (r.kind == RULE_RETROACTIVE) {
            scal_part += y * ge_y[k] - ge_e[k];
            yh = yh + q * m_w[j] + r.eta_e * ge_y[k];
        }
        if (clamped && x[k] != 0.0f) {
            phat[k] = 0.0f;
            gx[k] = yh;
        } else {
            float p = yh * (1.0f - y * y);
            phat[k] = p;
            gx[k] = p;
        }
    }
    float s = block_sum(scal_part, buf);
    if (threadIdx.x == 0) {
        gq[b] = q;
        scal[b] = s;
    }
}

// Pass B of the backward of step t, one block per row i (grid (N), block (THREADS)), every
// episode in turn (so dL/dalpha_ij has one writer): with q = y_i P_j,
//   dL/dy_{t-1,i} = row_scale sum_j Ĝ_ij r_j + sum_j (w_ij + alpha_ij Hebb_ij) P_j
//   (retroactive: sum_j GE_ij r_j in the first sum), dL/dalpha_ij += q Hebb_ij,
//   G_ij <- A_j Ĝ_ij + alpha_ij q   (= dL/dHebb_t),   GE_ij <- rate_j Ĝ_ij + d GE_ij.
// r_j = y'_j (fixed rate, row_scale eta) or v_j (modulated, row_scale 1). Without a trace only
// the product's term: dL/dy_{t-1,i} = sum_j w_ij P_j. `galpha` is [N, N] for every alpha shape
// (the host sums it to the shape).
extern "C" __global__ void pass_b(const struct RuleArgs r, const float* fan_w, const float* fan_b,
                                  const float* w, const float* alpha, const float* hebb,
                                  const float* elig, float* g, float* ge, float* galpha,
                                  const float* ypre, const float* ypost, const float* mod,
                                  const float* phat, float* dy_pre, int batch) {
    __shared__ float buf[THREADS];
    int n = r.n;
    int i = blockIdx.x;
    int retro = r.kind == RULE_RETROACTIVE;
    int plastic = r.kind != RULE_NONE;
    float row_scale = (r.kind == RULE_DECAYING || r.kind == RULE_OJA) ? r.eta : 1.0f;
    const float* wrow = w + (size_t)i * n;
    for (int b = 0; b < batch; b++) {
        size_t row = ((size_t)b * n + i) * n;
        const float* p = phat + (size_t)b * n;
        float yi = ypre[(size_t)b * n + i];
        float m = modulated(r.kind) ? mod[b] : 0.0f;
        float u = row_u(r, yi);
        float t1 = 0.0f, t2 = 0.0f;
        for (int j = threadIdx.x; j < n; j += THREADS) {
            float pj = p[j];
            if (!plastic) {
                t2 += wrow[j] * pj;
                continue;
            }
            size_t k = row + j;
            float yj = ypost[(size_t)b * n + j];
            struct Column c = column(r, fan_w, fan_b, m, yj, j);
            float aij = alpha_at(alpha, r.alpha_kind, n, i, j);
            float h = hebb[k];
            float qv = yi * pj;
            t2 += (wrow[j] + aij * h) * pj;
            galpha[(size_t)i * n + j] += qv * h;
            if (retro) {
                float gv = through_clip(h + c.rate * elig[k], r.clip, g[k]);
                t1 += ge[k] * c.v;
                ge[k] = c.rate * gv + (1.0f - r.eta_e) * ge[k];
                g[k] = gv + aij * qv;
            } else {
                float g1 = through_clip(c.a * h + u * c.v, r.clip, g[k]);
                float rj = r.kind == RULE_SIMPLE ? c.v : yj;
                t1 += g1 * rj;
                g[k] = c.a * g1 + aij * qv;
            }
        }
        float s1 = block_sum(t1, buf);
        float s2 = block_sum(t2, buf);
        if (threadIdx.x == 0) dy_pre[(size_t)b * n + i] = row_scale * s1 + s2;
    }
}

// dL/dw_ij = sum_t sum_b y_{t-1,bi} P_t,bj, with y_{-1} = y0. Grid (ceil(N / COLS), N), block
// (COLS): one thread per entry, the loop over steps and episodes in order.
extern "C" __global__ void grad_w(const float* y0, const float* ys, const float* phat,
                                  float* gw, int n, int batch, int steps) {
    int j = blockIdx.x * COLS + threadIdx.x;
    int i = blockIdx.y;
    if (j >= n) return;
    float acc = 0.0f;
    size_t bn = (size_t)batch * n;
    for (int t = 0; t < steps; t++) {
        const float* ypre = t == 0 ? y0 : ys + (size_t)(t - 1) * bn;
        const float* p = phat + (size_t)t * bn;
        for (int b = 0; b < batch; b++) acc += ypre[(size_t)b * n + i] * p[(size_t)b * n + j];
    }
    gw[(size_t)i * n + j] = acc;
}
