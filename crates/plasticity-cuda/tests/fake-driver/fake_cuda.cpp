// A stand-in for libcuda.so.1 that runs the kernels of src/kernels/episode.cu on the CPU, so the
// engine (engine.rs: buffers, offsets, launch geometry, argument order, checkpoints) and the
// kernels' C code can be checked against the CPU kernels on a machine without a GPU. NOT a
// GPU: the driver calls do what they mean on host memory (a device pointer is a host pointer),
// every call is synchronous, each block's threads run as OS threads with a barrier for
// __syncthreads, blocks one after another. The PTX that NVRTC made is ignored: the kernels come
// from the same .cu source compiled here by g++. Build and use: run.sh next to this file.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x, y, z;
};
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;
static void __syncthreads() { block_barrier->arrive_and_wait(); }

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#include "../../src/kernels/episode.cu"

// Threads of one block: a pool per block size, kept for the process.
struct Pool {
    int n;
    std::vector<std::thread> workers;
    std::barrier<> start, done, sync;
    std::function<void()> job;
    dim3 block_idx;
    explicit Pool(int n) : n(n), start(n + 1), done(n + 1), sync(n) {
        for (int t = 0; t < n; t++) {
            workers.emplace_back([this, t] {
                for (;;) {
                    start.arrive_and_wait();
                    threadIdx.x = t % blockDim.x;
                    threadIdx.y = (t / blockDim.x) % blockDim.y;
                    threadIdx.z = t / (blockDim.x * blockDim.y);
                    blockIdx = block_idx;
                    job();
                    done.arrive_and_wait();
                }
            });
        }
    }
};

static void run_grid(dim3 grid, dim3 block, std::function<void()> job) {
    static std::map<int, Pool*> pools;
    int n = (int)(block.x * block.y * block.z);
    Pool*& pool = pools[n];
    if (!pool) pool = new Pool(n);
    blockDim = block;
    gridDim = grid;
    block_barrier = &pool->sync;
    pool->job = std::move(job);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                pool->block_idx = dim3{x, y, z};
                pool->start.arrive_and_wait();
                pool->done.arrive_and_wait();
            }
}

template <class T>
static T arg(void** p, int k) {
    T v;
    std::memcpy(&v, p[k], sizeof(T));
    return v;
}
#define F(k) arg<float*>(p, k)
#define I(k) arg<int>(p, k)
#define R(k) arg<RuleArgs>(p, k)

typedef std::function<void(void**)> Kernel;
static std::map<std::string, Kernel> kernels() {
    return {
        {"forward_step", [](void** p) { forward_step(R(0), F(1), F(2), F(3), F(4), F(5), F(6), I(7)); }},
        {"modulator", [](void** p) { modulator(R(0), F(1), F(2), F(3)); }},
        {"update_trace", [](void** p) { update_trace(R(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), I(8)); }},
        {"pass_a", [](void** p) { pass_a(R(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), F(10), I(11)); }},
        {"rule_backprop", [](void** p) {
             rule_backprop(R(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), I(10), F(11), F(12), F(13), F(14), F(15), I(16));
         }},
        {"pass_b", [](void** p) {
             pass_b(R(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), F(10), F(11), F(12), F(13), F(14), I(15));
         }},
        {"grad_w", [](void** p) { grad_w(F(0), F(1), F(2), F(3), I(4), I(5), I(6)); }},
    };
}

typedef int CUresult;
typedef uint64_t CUdeviceptr;
extern "C" {
CUresult cuInit(unsigned) { return 0; }
// NVRTC asks the driver for its private tables when one is loaded: there are none here.
CUresult cuGetExportTable(const void** table, const void*) {
    *table = nullptr;
    return 500;  // CUDA_ERROR_NOT_FOUND
}
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, len, "fake CUDA device (CPU emulation of episode.cu)");
    return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    *v = attr == 75 ? 9 : 0;  // compute capability 9.0; no memory pools
    return 0;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = (void*)0x1; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = (void*)0x1; return 0; }
CUresult cuCtxSynchronize() { return 0; }
CUresult cuStreamSynchronize(void*) { return 0; }
CUresult cuEventCreate(void** e, unsigned) { *e = (void*)0x1; return 0; }
CUresult cuEventRecord(void*, void*) { return 0; }
CUresult cuEventDestroy_v2(void*) { return 0; }
CUresult cuEventSynchronize(void*) { return 0; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return 0; }
CUresult cuGetErrorString(int, const char** s) { *s = "fake driver error"; return 0; }
CUresult cuGetErrorName(int, const char** s) { *s = "FAKE_ERROR"; return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    *p = (CUdeviceptr)std::calloc(bytes ? bytes : 1, 1);
    return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { std::free((void*)p); return 0; }
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { std::memset((void*)p, v, n); return 0; }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) { std::memset((void*)p, v, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void*) { std::memcpy((void*)d, s, n); return 0; }
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void*) { std::memcpy(d, (void*)s, n); return 0; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void*) { std::memmove((void*)d, (void*)s, n); return 0; }
CUresult cuModuleLoadData(void** m, const void*) { *m = (void*)0x1; return 0; }
CUresult cuModuleUnload(void*) { return 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    static std::map<std::string, Kernel> table = kernels();
    auto it = table.find(name);
    if (it == table.end()) return 500;  // CUDA_ERROR_NOT_FOUND
    *f = (void*)&it->second;
    return 0;
}
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned, void*, void** params, void**) {
    // FAKE_CUDA_FAIL_LAUNCH=K: the K-th launch and every later one fail as a crashed kernel
    // would (CUDA_ERROR_LAUNCH_FAILED), for the callers' error paths.
    static long launches = 0;
    static const char* fail = std::getenv("FAKE_CUDA_FAIL_LAUNCH");
    if (fail && ++launches >= std::atol(fail)) return 719;
    Kernel* k = (Kernel*)f;
    run_grid(dim3{gx, gy, gz}, dim3{bx, by, bz}, [k, params] { (*k)(params); });
    return 0;
}
}
