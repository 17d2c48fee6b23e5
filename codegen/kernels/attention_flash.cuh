//===-- attention_flash.cuh: causal GQA prefill attention on tensor cores -===//
//
// Same contract as attention.cuh (query row r attends to cache rows
// 0..positions[r]; head h reads KV head h / kGroup), computed FlashAttention-2
// style on 16-bit tensor cores (mma.sync m16n8k16, sm_80+), fp32 accumulation.
//
// Two ways to run. In a function of one sequence (@prefill) the grid is
// (kNumKvHeads, ceil(rows * kGroup / kBlockM)) over the call's rows and the
// cache is contiguous (null tables). In a batched step (@step, where the
// runtime launches it for the rows of prompt chunks), `pages.runs` names the
// grid's tiles: grid row y is (first step row of a run, the run's rows, the
// tile's first vector in the run), where a run is rows of one sequence (one
// table); the tile's K/V rows are read through that table (cacheRow). The
// runtime builds the list (flashChunkTiles, runtime/exec/step_inputs.h).
//
// The query
// vectors are packed per KV head: vector v is query row v / kGroup of head
// kvHead * kGroup + v % kGroup, so the heads of a group share every K/V tile
// load. A block takes kBlockM consecutive vectors; warp w owns kMTiles
// 16-vector MMA tiles of them. The block walks the keys 0..(its largest
// position) in tiles of kBlockN rows, straight from this layer's cache:
//   1. S = Q K^T (K fragments loaded once per warp for all its tiles);
//   2. keys past a vector's position are masked (only in tiles that reach
//      past the block's smallest position); online softmax in base 2 with
//      the row max and sum in registers, rescaling O when the max grows;
//   3. O += P V, P rounded to the 16-bit type (as FlashAttention does).
// K/V tiles are double-buffered: tile j+1 streams in (cp.async) while tile j
// is computed. Rows past the block's largest position are zero-filled, so no
// memory past the prompt is read and nothing non-finite enters P V. Late
// query tiles (the most keys) are scheduled first. Shared memory rows are
// padded by 16 bytes, which makes the 8-row ldmatrix reads conflict-free for
// head dims that are multiples of 16. The output goes through shared memory
// so that each vector's head_dim values leave as 16-byte stores.
//
// When the launch rule asks for it (kWgmma) and the target is Hopper
// (sm_90a), head dims 64 and 128 run the two products on warpgroup MMA
// instead (wgmma.mma_async m64nNk16, kFlashWgmma): each warpgroup of the
// block (four warps) owns kMTiles tiles of 64 vectors (its warp w holds rows
// 16w..16w+15 of each), Q, K and V sit in shared memory as wgmma's
// canonical no-swizzle layout (8x8 core matrices of 128 bytes:
// row r, 16-byte chunk c at (r / 8) * kHeadDim * 16 + c * 128 + (r % 8) * 16
// bytes), S = Q K^T reads both from shared memory (K-major), and O += P V
// takes P from registers and V as an N-major operand of the same layout.
// The accumulator and P fragments are those of mma.sync, so the softmax is
// the same code. The tiles still arrive by cp.async (not TMA: the kernel's
// operands are plain pointers); a proxy fence hands them to wgmma.

using flash_type = cache_type;
constexpr bool kFlashBf16 = SameType<flash_type, bf16>::value;
static_assert((kFlashBf16 || SameType<flash_type, f16>::value) &&
                  SameType<query_type, flash_type>::value &&
                  SameType<out_type, flash_type>::value,
              "attention_flash: query, output and cache must share one "
              "16-bit type (bf16 or f16)");
static_assert(kHeadDim % 16 == 0 && kHeadDim <= 128,
              "attention_flash: head_dim must be a multiple of 16, <= 128");
static_assert(kNumHeads % kNumKvHeads == 0, "whole groups of query heads");

constexpr int kGroup = kNumHeads / kNumKvHeads;
constexpr int kKvDim = kNumKvHeads * kHeadDim;
constexpr int kWarps = kThreads / 32;
constexpr int kBlockM = kWarps * 16 * kMTiles;
constexpr int kStride = kHeadDim + 8; // padded shared row, in elements
constexpr int kChunks = kHeadDim / 8; // 16-byte chunks per row
constexpr int kKeyTiles = kBlockN / 8;
constexpr int kDimTiles = kHeadDim / 8;
constexpr float kLog2Scale =
    kScale * 1.4426950408889634f; // exp(x) = 2^(x log2 e)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr bool kFlashWgmma = kWgmma && (kHeadDim == 64 || kHeadDim == 128);
#else
constexpr bool kFlashWgmma = false;
#endif
static_assert(!kFlashWgmma || kThreads % 128 == 0,
              "attention_flash: the wgmma path runs whole warpgroups");
static_assert(!kFlashWgmma || kBlockN == 64 || kBlockN == 128,
              "attention_flash: wgmma scores take 64 or 128 keys a tile");

/// Byte offset of 16-byte chunk `chunk` of row `row` in a wgmma tile (8x8
/// core matrices, the chunks of a row 128 bytes apart).
__device__ __forceinline__ int flashCoreOffset(int row, int chunk) {
  return (row / 8) * kHeadDim * 16 + chunk * 128 + (row % 8) * 16;
}

/// Shared memory offset (elements) of chunk `chunk` of row `row` in a Q, K
/// or V tile: padded rows for mma.sync, core matrices for wgmma.
__device__ __forceinline__ int flashTileOffset(int row, int chunk) {
  if constexpr (kFlashWgmma)
    return flashCoreOffset(row, chunk) / int(sizeof(flash_type));
  else
    return row * kStride + chunk * 8;
}

/// The first row of the block's Q tile that this warpgroup's MMA tile `mt`
/// holds (wgmma: each warpgroup owns kMTiles tiles of 64 rows).
__device__ __forceinline__ int flashWarpgroupRow(int mt) {
  return (threadIdx.x / 128) * 64 * kMTiles + mt * 64;
}

/// The row of the block's Q tile that row `row` (0..15) of this warp's
/// slice of MMA tile `mt` is.
__device__ __forceinline__ int flashLocalRow(int mt, int row) {
  int warp = threadIdx.x / 32;
  return kFlashWgmma ? flashWarpgroupRow(mt) + (warp % 4) * 16 + row
                     : warp * 16 * kMTiles + mt * 16 + row;
}

/// Row and 16-byte chunk that copy `i` of a tile fills: for wgmma, eight
/// consecutive copies fill one core matrix (no bank conflicts).
__device__ __forceinline__ void flashCopySlot(int i, int &row, int &chunk) {
  if constexpr (kFlashWgmma) {
    row = (i / 8 / kChunks) * 8 + i % 8;
    chunk = (i / 8) % kChunks;
  } else {
    row = i / kChunks;
    chunk = i % kChunks;
  }
}

__device__ __forceinline__ unsigned flashSharedAddress(const void *pointer) {
  unsigned address;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }"
      : "=r"(address)
      : "l"(pointer));
  return address;
}

/// 16 bytes global -> shared, asynchronously; zero-filled when !valid.
__device__ __forceinline__ void flashCopy16(void *shared, const void *global,
                                            bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(
                   flashSharedAddress(shared)),
               "l"(global), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void flashCommit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending> __device__ __forceinline__ void flashWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

/// Four 8x8 16-bit matrices from shared memory (lane l gives row l % 8 of
/// matrix l / 8); `trans` transposes each.
template <bool kTrans>
__device__ __forceinline__ void flashLoadMatrices(unsigned (&r)[4],
                                                  const flash_type *p) {
  unsigned address = flashSharedAddress(p);
  if constexpr (kTrans)
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "r"(address)
        : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
}

/// d += a (16x16, row-major) * b (16x8, column-major), fp32 accumulators.
__device__ __forceinline__ void flashMma(float (&d)[4], const unsigned (&a)[4],
                                         unsigned b0, unsigned b1) {
  if constexpr (kFlashBf16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// Two fp32 values as a 16-bit pair, `low` in the low half (round to
/// nearest even).
__device__ __forceinline__ unsigned flashPack(float low, float high) {
  unsigned pair;
  if constexpr (kFlashBf16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(pair) : "f"(high), "f"(low));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(pair) : "f"(high), "f"(low));
  return pair;
}

__device__ __forceinline__ float flashExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/// A wgmma shared memory descriptor, no swizzle: `leading` and `stride`
/// are the byte distances between core matrices along K and along M/N
/// (K-major), or along K and along M/N swapped (N-major: PTX's LBO is the
/// K step, SBO the N step).
__device__ __forceinline__ unsigned long long
flashDescriptor(const void *tile, unsigned leading, unsigned stride) {
  unsigned long long address = flashSharedAddress(tile);
  return ((address & 0x3ffffu) >> 4) |
         (static_cast<unsigned long long>(leading >> 4) << 16) |
         (static_cast<unsigned long long>(stride >> 4) << 32);
}

/// A Q or K tile from row `row`, 16-byte chunk `chunk`, as a K-major
/// operand: chunks 128 bytes apart along K, 8-row groups kHeadDim * 16.
__device__ __forceinline__ unsigned long long
flashKMajor(const flash_type *tile, int row, int chunk) {
  return flashDescriptor(reinterpret_cast<const char *>(tile) +
                             flashCoreOffset(row, chunk),
                         128, kHeadDim * 16);
}
/// A V tile from key row `row` as an N-major operand: 8-key groups
/// kHeadDim * 16 bytes apart along K, chunks 128 along N.
__device__ __forceinline__ unsigned long long
flashNMajor(const flash_type *tile, int row) {
  return flashDescriptor(reinterpret_cast<const char *>(tile) +
                             flashCoreOffset(row, 0),
                         kHeadDim * 16, 128);
}

__device__ __forceinline__ void flashWgmmaFence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void flashWgmmaCommitAndWait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#endif
}
/// Shared memory written by cp.async becomes visible to wgmma (the async
/// proxy); every writer runs it before the barrier.
__device__ __forceinline__ void flashProxyFence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
/// Keeps the compiler from moving the reads and writes of an asynchronous
/// MMA's registers across it: pinned before wgmma.fence, its operands are
/// written before the fence (as PTX requires); pinned after the wait, they
/// are read after it.
template <int kN>
__device__ __forceinline__ void flashPinRegisters(float (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
    asm volatile("" : "+f"(d[i])::"memory");
}
template <int kN>
__device__ __forceinline__ void flashPinRegisters(unsigned (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
    asm volatile("" : "+r"(d[i])::"memory");
}

// The wgmma instructions, spelled once per shape with the 16-bit type T
// ("bf16" or "f16") a parameter: fp32 accumulators d[0 .. N/2) of this
// thread, scale-d 1 (accumulate), A and B unscaled.
#define TRENI_FLASH_D32                                                        \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),      \
  "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),    \
  "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),             \
  "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),             \
  "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),             \
  "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define TRENI_FLASH_D64                                                        \
  TRENI_FLASH_D32, "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),         \
  "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),             \
  "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]),             \
  "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),             \
  "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),             \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),             \
  "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define TRENI_FLASH_REGS32                                                     \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,"        \
  "%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define TRENI_FLASH_REGS64                                                     \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,"        \
  "%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,"       \
  "%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,"       \
  "%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
// m64n64k16, A and B from shared memory (descriptors a, b), both K-major.
#define TRENI_FLASH_WGMMA_SS64(T)                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." T "." T           \
               " " TRENI_FLASH_REGS32 ", %32, %33, p, 1, 1, 0, 0;\n}"          \
               : TRENI_FLASH_D32                                               \
               : "l"(a), "l"(b), "r"(1))
// m64n64k16, A from registers a[4], B at descriptor b (TRANS "1": N-major).
#define TRENI_FLASH_WGMMA_RS64(T, TRANS)                                       \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." T "." T           \
               " " TRENI_FLASH_REGS32                                          \
               ", {%32,%33,%34,%35}, %36, p, 1, 1, " TRANS ";\n}"              \
               : TRENI_FLASH_D32                                               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))
// m64n128k16, A and B from shared memory, both K-major.
#define TRENI_FLASH_WGMMA_SS128(T)                                             \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." T "." T          \
               " " TRENI_FLASH_REGS64 ", %64, %65, p, 1, 1, 0, 0;\n}"          \
               : TRENI_FLASH_D64                                               \
               : "l"(a), "l"(b), "r"(1))
// m64n128k16, A from registers a[4], B at descriptor b (TRANS "1":
// N-major).
#define TRENI_FLASH_WGMMA_RS128(T, TRANS)                                      \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." T "." T          \
               " " TRENI_FLASH_REGS64                                          \
               ", {%64,%65,%66,%67}, %68, p, 1, 1, " TRANS ";\n}"              \
               : TRENI_FLASH_D64                                               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))

/// d (64 x kBlockN, this warp's 16 rows) += A (64x16 at descriptor a,
/// K-major) * B (16 x kBlockN at descriptor b, K-major).
__device__ __forceinline__ void flashWgmmaScores(float (&d)[kBlockN / 2],
                                                 unsigned long long a,
                                                 unsigned long long b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kBlockN == 64) {
    if constexpr (kFlashBf16)
      TRENI_FLASH_WGMMA_SS64("bf16");
    else
      TRENI_FLASH_WGMMA_SS64("f16");
  } else if constexpr (kBlockN == 128) {
    if constexpr (kFlashBf16)
      TRENI_FLASH_WGMMA_SS128("bf16");
    else
      TRENI_FLASH_WGMMA_SS128("f16");
  }
#endif
}

/// d (64 x kHeadDim) += P (64x16, mma.sync's A fragment of this warp's 16
/// rows) * V (16 x kHeadDim at descriptor b, N-major).
template <int kN>
__device__ __forceinline__ void flashWgmmaValues(float (&d)[kN / 2],
                                                 const unsigned (&a)[4],
                                                 unsigned long long b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kN == 64) {
    if constexpr (kFlashBf16)
      TRENI_FLASH_WGMMA_RS64("bf16", "1");
    else
      TRENI_FLASH_WGMMA_RS64("f16", "1");
  } else if constexpr (kN == 128) {
    if constexpr (kFlashBf16)
      TRENI_FLASH_WGMMA_RS128("bf16", "1");
    else
      TRENI_FLASH_WGMMA_RS128("f16", "1");
  }
#endif
}

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const query_type *query, const int *positions, out_type *out,
            cache_type *keyCache, cache_type *valueCache, KvPages pages,
            int rows) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap(); // mma.sync on 16-bit types needs sm_80 (the launch rule says so)
#else
  extern __shared__ __align__(16) unsigned char flashShared[];
  flash_type *qTile = reinterpret_cast<flash_type *>(flashShared);
  flash_type *keyTiles = qTile + kBlockM * kStride; // [2][kBlockN][kStride]
  flash_type *valueTiles = keyTiles + 2 * kBlockN * kStride;
  __shared__ int bounds[2]; // smallest and largest position of the block

  const int kvHead = blockIdx.x;
  const int lane = threadIdx.x % 32;

  treniWaitForPreviousKernel(); // the query and the cache rows are fresh
  // This block's vectors: rowBase's rows (one sequence), from `first`.
  int rowBase = 0, vectors = rows * kGroup, first;
  if (pages.runs) {
    const int *run = pages.runs + 3 * blockIdx.y;
    rowBase = run[0];
    vectors = run[1] * kGroup;
    first = run[2];
  } else {
    first = (gridDim.y - 1 - blockIdx.y) * kBlockM; // late tiles first
  }
  if (threadIdx.x == 0) {
    bounds[0] = 0x7fffffff;
    bounds[1] = -1;
  }
  for (int i = threadIdx.x; i < kBlockM * kChunks; i += kThreads) {
    int local, chunk;
    flashCopySlot(i, local, chunk);
    int v = first + local;
    bool valid = v < vectors;
    int row = rowBase + (valid ? v / kGroup : 0);
    int head = kvHead * kGroup + (valid ? v % kGroup : 0);
    flashCopy16(qTile + flashTileOffset(local, chunk),
                query + ((long long)row * kNumHeads + head) * kHeadDim +
                    chunk * 8,
                valid);
  }
  flashCommit();
  __syncthreads(); // bounds initialised
  for (int local = threadIdx.x; local < kBlockM; local += kThreads)
    if (first + local < vectors) {
      int position = positions[rowBase + (first + local) / kGroup];
      atomicMin(&bounds[0], position);
      atomicMax(&bounds[1], position);
    }
  __syncthreads();
  const int minPosition = bounds[0], maxPosition = bounds[1];
  const int keyTileCount = (maxPosition + kBlockN) / kBlockN;

  // Tile `keyTile` of K and V into buffer `buffer`, as one cp.async group.
  auto loadKeysValues = [&](int keyTile, int buffer) {
    for (int i = threadIdx.x; i < kBlockN * kChunks; i += kThreads) {
      int r, chunk;
      flashCopySlot(i, r, chunk);
      int key = keyTile * kBlockN + r;
      bool valid = key <= maxPosition;
      long long offset = cacheRow(pages, rowBase, valid ? key : 0) * kKvDim +
                         kvHead * kHeadDim + chunk * 8;
      int slot = buffer * kBlockN * kStride + flashTileOffset(r, chunk);
      flashCopy16(keyTiles + slot, keyCache + offset, valid);
      flashCopy16(valueTiles + slot, valueCache + offset, valid);
    }
    flashCommit();
  };

  // This thread's two rows (lane / 4 and lane / 4 + 8) of each MMA tile.
  int rowPosition[kMTiles][2];
  float rowMax[kMTiles][2], rowSum[kMTiles][2];
  float acc[kMTiles][kDimTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int v = first + flashLocalRow(mt, lane / 4 + h * 8);
      rowPosition[mt][h] =
          v < vectors ? positions[rowBase + v / kGroup] : -1;
      rowMax[mt][h] = __int_as_float(0xff800000); // -inf
      rowSum[mt][h] = 0.0f;
    }
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[mt][dt][e] = 0.0f;
  }

  if (keyTileCount > 0)
    loadKeysValues(0, 0);
  for (int j = 0; j < keyTileCount; ++j) {
    const int buffer = j & 1;
    if (j + 1 < keyTileCount) {
      loadKeysValues(j + 1, buffer ^ 1);
      flashWait<1>();
    } else {
      flashWait<0>();
    }
    flashProxyFence();
    __syncthreads(); // tile j (and, the first time, Q) is in shared memory
    const flash_type *keys = keyTiles + buffer * kBlockN * kStride;
    const flash_type *values = valueTiles + buffer * kBlockN * kStride;

    // 1. Scores.
    float s[kMTiles][kKeyTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          s[mt][nt][e] = 0.0f;
    if constexpr (kFlashWgmma) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        flashPinRegisters(reinterpret_cast<float(&)[kKeyTiles * 4]>(s[mt]));
      flashWgmmaFence();
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        auto &scores = reinterpret_cast<float(&)[kKeyTiles * 4]>(s[mt]);
#pragma unroll
        for (int ks = 0; ks < kHeadDim / 16; ++ks)
          flashWgmmaScores(scores,
                           flashKMajor(qTile, flashWarpgroupRow(mt), ks * 2),
                           flashKMajor(keys, 0, ks * 2));
      }
      flashWgmmaCommitAndWait();
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        flashPinRegisters(reinterpret_cast<float(&)[kKeyTiles * 4]>(s[mt]));
    } else {
#pragma unroll
      for (int ks = 0; ks < kHeadDim / 16; ++ks) {
        unsigned a[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
          flashLoadMatrices<false>(
              a[mt], qTile + flashLocalRow(mt, lane % 16) * kStride + ks * 16 +
                         (lane / 16) * 8);
#pragma unroll
        for (int np = 0; np < kKeyTiles / 2; ++np) {
          unsigned b[4];
          flashLoadMatrices<false>(
              b, keys + (np * 16 + (lane / 16) * 8 + lane % 8) * kStride +
                     ks * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            flashMma(s[mt][2 * np], a[mt], b[0], b[1]);
            flashMma(s[mt][2 * np + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }

    // 2. Mask and online softmax (base 2).
    const bool mask = (j + 1) * kBlockN - 1 > minPosition;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tileMax = __int_as_float(0xff800000);
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            float x = s[mt][nt][e] * kLog2Scale;
            int key = j * kBlockN + nt * 8 + (lane % 4) * 2 + (e & 1);
            if (mask && key > rowPosition[mt][h])
              x = __int_as_float(0xff800000);
            s[mt][nt][e] = x;
            tileMax = fmaxf(tileMax, x);
          }
        tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
        tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 2));
        float newMax = fmaxf(rowMax[mt][h], tileMax);
        // A row with no key yet keeps -inf; subtract 0 instead (no NaN).
        float base = newMax == __int_as_float(0xff800000) ? 0.0f : newMax;
        float correction = flashExp2(rowMax[mt][h] - base);
        rowMax[mt][h] = newMax;
        rowSum[mt][h] *= correction;
#pragma unroll
        for (int dt = 0; dt < kDimTiles; ++dt) {
          acc[mt][dt][2 * h] *= correction;
          acc[mt][dt][2 * h + 1] *= correction;
        }
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            float p = flashExp2(s[mt][nt][e] - base);
            s[mt][nt][e] = p;
            rowSum[mt][h] += p;
          }
      }
    }

    // 3. O += P V: the score accumulators of two key tiles are one A operand.
    unsigned p[kBlockN / 16][kMTiles][4];
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        p[kk][mt][0] = flashPack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        p[kk][mt][1] = flashPack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        p[kk][mt][2] = flashPack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        p[kk][mt][3] = flashPack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
    if constexpr (kFlashWgmma) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        flashPinRegisters(reinterpret_cast<float(&)[kDimTiles * 4]>(acc[mt]));
      flashPinRegisters(
          reinterpret_cast<unsigned(&)[kBlockN / 16 * kMTiles * 4]>(p));
      flashWgmmaFence(); // P and the rescaled O are in registers
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
          flashWgmmaValues<kHeadDim>(
              reinterpret_cast<float(&)[kDimTiles * 4]>(acc[mt]), p[kk][mt],
              flashNMajor(values, kk * 16));
      flashWgmmaCommitAndWait();
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        flashPinRegisters(reinterpret_cast<float(&)[kDimTiles * 4]>(acc[mt]));
    } else {
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
        for (int dp = 0; dp < kDimTiles / 2; ++dp) {
          unsigned b[4];
          flashLoadMatrices<true>(
              b, values +
                     (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                     dp * 16 + (lane / 16) * 8);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            flashMma(acc[mt][2 * dp], p[kk][mt], b[0], b[1]);
            flashMma(acc[mt][2 * dp + 1], p[kk][mt], b[2], b[3]);
          }
        }
    }
    __syncthreads(); // everyone is done with `buffer` before it is refilled
  }
  flashWait<0>(); // (Q's copy, when no key tile ran)

  // Normalise and stage this warp's rows in its own rows of the Q tile.
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = rowSum[mt][h];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
      int local = flashLocalRow(mt, lane / 4 + h * 8);
#pragma unroll
      for (int dt = 0; dt < kDimTiles; ++dt)
        *reinterpret_cast<unsigned *>(qTile + local * kStride + dt * 8 +
                                      (lane % 4) * 2) =
            flashPack(acc[mt][dt][2 * h] * inverse,
                      acc[mt][dt][2 * h + 1] * inverse);
    }
  __syncwarp();
  for (int i = lane; i < 16 * kMTiles * kChunks; i += 32) {
    int r = i / kChunks, chunk = i % kChunks;
    int local = flashLocalRow(r / 16, r % 16), v = first + local;
    if (v >= vectors)
      continue;
    int row = rowBase + v / kGroup, head = kvHead * kGroup + v % kGroup;
    *reinterpret_cast<uint4 *>(
        out + ((long long)row * kNumHeads + head) * kHeadDim + chunk * 8) =
        *reinterpret_cast<const uint4 *>(qTile + local * kStride + chunk * 8);
  }
#endif
}
