//===-- common.cuh: element types and block reductions (every kernel) ----===//
//
// NVRTC compiles these sources with no headers at all, so the 16-bit types
// are our own: storage is the raw bits, arithmetic is always fp32.
//   bf16: the top half of an fp32; stores round to nearest even.
//   f16:  IEEE half, converted by the PTX cvt instructions.

struct bf16 {
  unsigned short bits;
};
struct f16 {
  unsigned short bits;
};

__device__ __forceinline__ float toFloat(float value) { return value; }
__device__ __forceinline__ float toFloat(bf16 value) {
  return __uint_as_float(unsigned(value.bits) << 16);
}
__device__ __forceinline__ float toFloat(f16 value) {
  float result;
  asm("cvt.f32.f16 %0, %1;" : "=f"(result) : "h"(value.bits));
  return result;
}

/// fp32 -> T; `fromFloat<T>(x)`.
template <typename T> __device__ __forceinline__ T fromFloat(float value);
template <> __device__ __forceinline__ float fromFloat<float>(float value) {
  return value;
}
template <> __device__ __forceinline__ bf16 fromFloat<bf16>(float value) {
  unsigned bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) // NaN: keep it a (quiet) NaN
    return bf16{(unsigned short)((bits >> 16) | 0x40u)};
  bits += 0x7fffu + ((bits >> 16) & 1u); // round to nearest, ties to even
  return bf16{(unsigned short)(bits >> 16)};
}
template <> __device__ __forceinline__ f16 fromFloat<f16>(float value) {
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
  return f16{bits};
}

/// kN consecutive elements moved as one access, or as accesses of 16 bytes
/// when the vector is larger (eight 16-bit values: one). The address must be
/// a multiple of the vector's size up to 16 bytes: arena buffers and weights
/// are 16-byte aligned (treni-plan-buffers), and launch rules pick a kN
/// that divides every row and slice offset.
template <typename T, int kN>
struct alignas(sizeof(T) * kN < 16 ? sizeof(T) * kN : 16) Vector {
  T v[kN];
};
template <int kN, typename T>
__device__ __forceinline__ Vector<T, kN> loadVector(const T *at) {
  return *reinterpret_cast<const Vector<T, kN> *>(at);
}
template <int kN, typename T>
__device__ __forceinline__ void storeVector(T *at, const Vector<T, kN> &value) {
  *reinterpret_cast<Vector<T, kN> *>(at) = value;
}

/// SameType<A, B>::value: whether A and B are one type (no <type_traits>).
template <typename A, typename B> struct SameType {
  static constexpr bool value = false;
};
template <typename A> struct SameType<A, A> {
  static constexpr bool value = true;
};

/// d += a (16 x 16, row-major) * b (16 x 8, column-major) on the tensor
/// cores (mma.sync m16n8k16, sm_80+), 16-bit T inputs (bf16 or f16) as
/// pairs in 32-bit registers, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], unsigned a0,
                                         unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
  if constexpr (SameType<T, bf16>::value)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// Where a step row's positions live in the KV cache (the host's view is
/// runtime/exec/kv_pages.h). With block tables (a paged cache: @step, whose
/// rows may belong to different sequences) position p of row r is row
/// p % (1 << blockShift) of block blockTables[tableOffsets[r] +
/// (p >> blockShift)]; without (null tables) the cache is contiguous and
/// position p is row p. The same kernel serves both: the branch is uniform.
/// `runs` is for a kernel that shares K/V tiles among rows (attention_flash
/// on a batched step's prompt-chunk rows): per grid row, a tile of rows of
/// one sequence (see attention_flash.cuh); null for every other launch.
struct KvPages {
  const int *blockTables;
  const int *tableOffsets;
  const int *runs;
  int blockShift;
};
__device__ __forceinline__ long long cacheRow(const KvPages &pages, int row,
                                              int position) {
  if (!pages.blockTables)
    return position;
  int block =
      pages.blockTables[pages.tableOffsets[row] + (position >> pages.blockShift)];
  return ((long long)block << pages.blockShift) +
         (position & ((1 << pages.blockShift) - 1));
}

/// Programmatic dependent launch (sm_90+). The runtime may start a kernel
/// while the previous one in the stream is still running, so that launch
/// latency overlaps work: every kernel calls this before it reads anything
/// an earlier kernel wrote and before it writes global memory (loads of
/// weights, which nothing writes, may come first). It waits until the
/// previous kernel has finished and its writes are visible, then lets the
/// next kernel start launching (it in turn waits here). A no-op when the
/// launch was not programmatic, and below sm_90.
__device__ __forceinline__ void treniWaitForPreviousKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warpReduceSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}
__device__ __forceinline__ float warpReduceMax(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

/// Sum (or max) over the block; every thread gets the result. kBlock is the
/// block size, a multiple of 32. Safe to call repeatedly in one kernel.
template <int kBlock, bool kMax>
__device__ __forceinline__ float blockReduce(float value) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "block of whole warps");
  __shared__ float warpResults[kBlock / 32];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  value = kMax ? warpReduceMax(value) : warpReduceSum(value);
  if (lane == 0)
    warpResults[warp] = value;
  __syncthreads();
  value = warpResults[0];
  for (int i = 1; i < kBlock / 32; ++i)
    value = kMax ? fmaxf(value, warpResults[i]) : value + warpResults[i];
  __syncthreads(); // the next call may overwrite warpResults
  return value;
}
template <int kBlock> __device__ __forceinline__ float blockReduceSum(float v) {
  return blockReduce<kBlock, false>(v);
}
template <int kBlock> __device__ __forceinline__ float blockReduceMax(float v) {
  return blockReduce<kBlock, true>(v);
}
