// The op interface every backend implements. Ops know nothing of Qwen2: each takes tensors and a
// small parameter struct and writes a caller-allocated output. The CPU backend is the reference;
// every op of a faster backend is tested against its CPU twin.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "wick/tensor.h"

namespace wick {

struct LogitSummary;  // wick/logit_summary.h

struct LinearParams {
  float alpha = 1.0f;  // out = alpha * x·Wᵀ + beta * out (+ bias)
  float beta = 0.0f;   // 1 accumulates into out (the LoRA path)
};

struct AttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // grouped-query attention: num_heads / num_kv_heads query heads share one kv head
  int64_t head_dim = 0;
  float scale = 1.0f;
};

struct MatmulParams {
  bool transpose_a = false;  // op(a) = aᵀ
  bool transpose_b = false;  // op(b) = bᵀ
  float alpha = 1.0f;        // out = alpha · op(a)·op(b) + beta · out
  float beta = 0.0f;         // 1 accumulates into out (a parameter gradient)
};

/// Where the keys of each query of paged_attention are: blocks of block_size rows of a pool shared by many
/// sequences, named by each sequence's block table. Query t's key j (j ≤ positions[t]) is row
/// tables[starts[t] + j / block_size] · block_size + j % block_size of k and v.
struct PagedKeys {
  Tensor tables{};     // i32 [m]: each sequence's block table, the sequences one after another
  Tensor starts{};     // i32 [n]: where query t's block table begins in `tables`
  Tensor positions{};  // i32 [n]: query t sees its sequence's keys [0, positions[t]]
  int64_t block_size = 1;
  int64_t max_visible = 0;  // the most keys a query sees (max positions + 1): how a device spreads the work
};

/// What attention_backward reads again of its forward call: q [n, heads, d]; k, v [capacity, kv_heads, d];
/// positions i32 [n].
struct AttentionInputs {
  Tensor q{}, k{}, v{}, positions{};
};

/// attention_backward's outputs: dq [n, heads, d] written; dk, dv [capacity, kv_heads, d] accumulated.
struct AttentionGrads {
  Tensor dq{}, dk{}, dv{};
};

/// LoRA factors of one projection as fused decode kernels read them from device memory: ΔW = scale · B·A with
/// A [rank, in] and B [out, rank] in the compute dtype; rank 0 = no adapter on this projection.
struct LoraEntry {
  const void* a = nullptr;
  const void* b = nullptr;
  float scale = 0.0f;
  int32_t rank = 0;
};

/// Where a fused decode op finds the adapter in effect. The entries live in device memory that each step fills
/// (FusedDecode::begin_step), so one recorded graph serves every adapter and none. All null: no LoRA.
struct DecodeLora {
  const LoraEntry* entries = nullptr;  // device: one per projection of the op, in ProjKind order
  void* scratch = nullptr;             // device: this call's row of FusedDecode::lora_scratch
  const int32_t* epoch = nullptr;      // device: a step counter, never 0, changed by the caller before every run
};

/// Where the sequences of a packed encoder batch are: sequence s holds token rows [starts[s], starts[s + 1]) of the
/// batch (no padding between sequences: a batch of lengths 3, 5 is 8 rows).
struct EncoderSpans {
  Tensor starts{};      // i32 [sequences + 1], on the device; starts[0] = 0, nondecreasing, last = rows
  int64_t max_len = 0;  // the longest sequence (max starts[s + 1] − starts[s]): how a device spreads the work
};

/// A learned relative-position bias added to every attention score (MPNet, as T5's bidirectional buckets): the
/// score of query i and key j gains table[bucket(j − i), head], where bucket() is transformers' MPNet
/// relative_position_bucket(j − i, num_buckets, max_distance).
struct RelativeBias {
  Tensor table{};  // [num_buckets, heads]; undefined: no bias
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  bool defined() const { return table.defined(); }
};

/// How encoder_pool reduces a sequence's rows to one vector (sentence-transformers' Pooling modes).
enum class PoolMode { mean, max, cls, last };

/// The shapes of a model's one-token step, for FusedDecode::supports.
struct DecodeShape {
  int64_t hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0;
};

/// A fused op's input row: x, or rmsnorm(x, norm) — computed inside the op — when `norm` is defined.
struct FusedInput {
  Tensor x{};     // [1, k]: the residual stream or an earlier op's output
  Tensor norm{};  // [k] RMSNorm weight, or undefined (x is used as it is)
  float eps = 0.0f;
};

/// The biases of the q, k and v projections (all three, or none): Backend::rope_kv adds them.
struct QkvBias {
  Tensor q{}, k{}, v{};
  bool defined() const { return q.defined(); }
};

/// The projections and rotation of FusedDecode::attention_inputs.
struct QkvProjections {
  Tensor weight[3]{};  // q [heads·d, k]; k and v [kv_heads·d, k]
  Tensor bias[3]{};    // [rows of weight[i]] or undefined
  Tensor positions{};  // i32 [1] on the device: the token's position, read when the op runs
  Tensor slots{};      // i32 [1] (FusedRows: [rows]) on the device: the cache row k and v go to (a paged pool's
                       // row); undefined: positions
  double rope_theta = 0.0;
  int64_t head_dim = 0;
};

/// Fused one-token (decode) ops of a pre-norm decoder layer — RMSNorm, RoPE'd grouped-query projections with the
/// KV-cache write, a gated MLP, residual adds — usable by any model of that family. Each op makes one pass over its
/// weights and computes what the plain Backend ops named in its comment compute (f32 arithmetic, compute-dtype
/// storage); tests hold each against those ops on the CPU backend. With a DecodeLora, each projection also adds
/// its adapter's scale · B·(A·n), read from device memory, so a recorded step serves any adapter.
class FusedDecode {
 public:
  virtual ~FusedDecode() = default;
  /// Whether these ops take a model of this shape: the alignment rules of the kernels (hidden, ffn and
  /// heads·head_dim multiples of 8; head_dim even).
  virtual bool supports(const DecodeShape& shape) const = 0;
  /// The largest adapter rank the LoRA builds take; larger ones need the plain ops.
  virtual int32_t max_lora_rank() const = 0;
  /// Device scratch for `calls` LoRA-carrying op calls of one recorded step, zero-filled: row i (`.rows(i, i + 1)`,
  /// its raw() pointer goes into DecodeLora::scratch) belongs to call i. Zeroed once here; the kernels never need
  /// it reset because every published value carries the step's epoch, which is never 0.
  virtual Tensor lora_scratch(int64_t calls) = 0;
  /// The first op of a step: x = embedding(embed, ids) for one id, and the adapter in effect installed by copying
  /// table.nbytes() bytes into `table` from the device address held in `source` (8 bytes, written with the step's
  /// other inputs), so choosing another adapter changes one input of the step and adds no work.
  virtual void begin_step(const Tensor& embed, const Tensor& ids, Tensor& x, const Tensor& source, Tensor& table) = 0;
  /// For i in {q, k, v}: y_i = linear(in, p.weight[i], p.bias[i]) (+ LoRA), then rope_kv at p.positions[0]: q into
  /// `q` [1, heads·d], k and v into the caches [capacity, kv_heads, d] at row p.slots[0] (or that position).
  virtual void attention_inputs(const FusedInput& in, const QkvProjections& p, Tensor& q, Tensor& k_cache,
                                Tensor& v_cache, const DecodeLora& lora) = 0;
  /// x += linear(in, w) (+ LoRA): an output projection and its residual add.  in [1, k]; w [rows of x, k].
  virtual void residual_linear(const Tensor& in, const Tensor& w, Tensor& x, const DecodeLora& lora) = 0;
  /// h = swiglu(linear(in, w_gate), linear(in, w_up)) (+ LoRA on both): the gated MLP's input half.  h [1, ffn].
  virtual void gate_up(const FusedInput& in, const Tensor& w_gate, const Tensor& w_up, Tensor& h,
                       const DecodeLora& lora) = 0;
  /// logits = linear(in, w), f32 [1, rows of w]: the final norm and the head.
  virtual void norm_linear(const FusedInput& in, const Tensor& w, Tensor& logits) = 0;
};

/// Fused ops over a few token rows of a paged batch (a decode step of up to max_rows() sequences): each makes one
/// pass over its weights for all rows and computes what the plain Backend ops named in its comment compute (f32
/// accumulation, compute-dtype storage); tests hold each against those ops on the CPU backend. A FusedInput's norm is
/// rmsnorm over each row, computed inside the op. No LoRA: batches with adapters take the plain ops and their row
/// gather.
class FusedRows {
 public:
  virtual ~FusedRows() = default;
  /// The most token rows an op takes.
  virtual int64_t max_rows() const = 0;
  /// The most token rows for which a model's pass should take these ops (at most max_rows(); beyond it, the plain
  /// ops are faster on this device).
  virtual int64_t step_rows() const = 0;
  /// The most token rows for which a model's pass should take linear_f32 for its head (at most step_rows(); beyond
  /// it a GEMM is faster: the head is one long pass over a large weight, which latency does not dominate).
  virtual int64_t head_rows() const = 0;
  /// Whether the ops take a model of this shape (hidden, ffn and heads·head_dim multiples of 32; head_dim of 16).
  virtual bool supports(const DecodeShape& shape) const = 0;
  /// For i in {q, k, v}: y_i = linear(in, p.weight[i], p.bias[i]), then rope_kv at each row's p.positions[t]: q into
  /// `q` [rows, heads·d], k and v into the pool's rows [pool rows, kv_heads, d] at p.slots[t].  in.x [rows, k].
  virtual void attention_inputs(const FusedInput& in, const QkvProjections& p, Tensor& q, Tensor& k_pool,
                                Tensor& v_pool) = 0;
  /// x += linear(in, w): an output projection and its residual add.  in [rows, k]; w [width of x, k]; x [rows, ·].
  virtual void residual_linear(const Tensor& in, const Tensor& w, Tensor& x) = 0;
  /// h = swiglu(linear(in, w_gate), linear(in, w_up)).  h [rows, ffn].
  virtual void gate_up(const FusedInput& in, const Tensor& w_gate, const Tensor& w_up, Tensor& h) = 0;
  /// out = linear(in, w), f32 [rows, rows of w]: the final norm and the head.
  virtual void linear_f32(const FusedInput& in, const Tensor& w, Tensor& out) = 0;
};

/// A recorded sequence of ops that can be replayed (a CUDA graph). Tensors it uses keep their addresses,
/// so inputs change between replays by writing into them (Backend::write), not by passing new tensors.
class Graph {
 public:
  virtual ~Graph() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  /// The dtype this backend keeps weights and activations in (f32 on the CPU).
  virtual DType compute_dtype() const = 0;

  /// Uninitialised device storage.
  virtual Tensor alloc(const Shape& shape, DType dtype) = 0;
  /// A device copy of a CPU tensor, converted to `dtype`.
  virtual Tensor upload(const Tensor& host, DType dtype) = 0;
  /// A weight matrix (projection, embedding, head) as this backend multiplies by it, never written afterwards: by
  /// default a copy in compute_dtype(); the CPU backend keeps bf16 or f16 as it is (CpuWeights::native), sharing host's
  /// storage — a view of the file's read-only mapping — or quantises it to q8_0 (CpuWeights::int8), and its ops take
  /// such weights where backend.h says so.
  virtual Tensor upload_weight(const Tensor& host) { return upload(host, compute_dtype()); }
  /// A CPU f32 copy of a device tensor.
  virtual Tensor download(const Tensor& device_tensor) = 0;
  /// Queues a copy of `bytes` host bytes into the start of `dst` (ordered with the ops around it).
  virtual void write(Tensor& dst, const void* host, size_t bytes) = 0;
  /// Records the ops `body` queues into a Graph instead of running them; nullptr when this backend has
  /// no graphs (then the caller runs body itself each time).
  virtual std::unique_ptr<Graph> capture(const std::function<void()>& body) {
    (void)body;
    return nullptr;
  }

  /// The summary of one row of f32 logits (wick/logit_summary.h): its `count` best ids and the logits of the ids
  /// in `gather`. By default the row is downloaded and summarized on the host; a device backend reduces it where it
  /// is, so only the summary crosses to the host.
  virtual LogitSummary summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather);
  /// The summaries of rows of f32 logits [rows, n], one per row: row r's `count` best ids and the logits of the ids
  /// in gather[r] (gather empty, or one list per row). By default the rows are downloaded at once and summarized on
  /// the host; a device backend reduces them all where they are, in one pass and one copy to the host. Throws
  /// bad_input on logits not 2-D f32, a gather of neither 0 nor rows lists, or a gathered id outside its row.
  virtual std::vector<LogitSummary> summarize_rows(const Tensor& logits, int32_t count,
                                                   const std::vector<std::vector<int32_t>>& gather);

  /// The most device memory this backend's tensors have held at once (torch's max_memory_allocated); 0 for a
  /// backend in host memory (the process's peak resident set tells that).
  virtual int64_t peak_memory_bytes() const { return 0; }
  /// Makes this backend's device the calling thread's current one (a GPU among several); nothing on the CPU.
  virtual void bind_thread() {}
  /// The stream this backend's work is ordered on (a cudaStream_t), for libraries that enqueue onto it (NCCL);
  /// null on the CPU.
  virtual void* native_stream() { return nullptr; }

  /// The fused one-token decode ops, or nullptr where the plain ops serve (the CPU backend).
  virtual FusedDecode* fused_decode() { return nullptr; }
  /// The fused few-row ops, or nullptr where the plain ops serve (the CPU backend).
  virtual FusedRows* fused_rows() { return nullptr; }

  /// out[t, :] = table[ids[t], :].  table [vocab, hidden] (an upload_weight: bf16 or q8_0 on the CPU too), ids i32
  /// [tokens], out [tokens, hidden].
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;
  /// out = x / sqrt(mean(x²) + eps) * weight, per row.  x, out [rows, n]; weight [n].
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  /// The residual add folded into the next norm: x += delta, then normed = rmsnorm(x).  x, delta, normed [rows, n].
  virtual void add_rmsnorm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps, Tensor& normed) = 0;
  /// out = alpha · x·Wᵀ + beta · out + bias.  x [rows, in]; w [out, in] (an upload_weight: bf16 or q8_0 on the CPU
  /// too); bias [out] or undefined; out [rows, out].
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, LinearParams p = {}) = 0;
  /// Several projections of one input at once (an encoder's q, k and v): w [groups · outs, in] holds the groups'
  /// weights one after the other (an upload_weight), bias [groups · outs] or undefined, out [groups · rows, outs]
  /// with group g's output at rows [g · rows, (g + 1) · rows); groups = out.dim(0) / x.dim(0). Each group as
  /// linear() computes it; the default runs linear() per group.
  virtual void linear_stack(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out);
  /// Rotates pairs (i, i + d/2) of each head by position·θ^(-2i/d) in place (NeoX layout).
  /// x [tokens, heads, head_dim]; positions i32 [tokens].
  virtual void rope(Tensor& x, const Tensor& positions, double theta) = 0;
  /// RoPE on q and k in place, then k and v written into the caches at rows `positions` — or at rows `rows`
  /// (i32 [n]) when given: a paged pool (the attention prologue of a batch). With `bias`, each projection's bias is
  /// added first (q and k in place, v on its way into the cache), as linear would have added it: the projections'
  /// bias adds ride in this one launch.  q [n, heads, d]; k, v [n, kv_heads, d]; caches [capacity, kv_heads, d];
  /// biases [heads·d], [kv_heads·d], [kv_heads·d].
  virtual void rope_kv(Tensor& q, Tensor& k, const Tensor& v, const Tensor& positions, double theta, Tensor& k_cache,
                       Tensor& v_cache, const Tensor& rows = Tensor(), const QkvBias& bias = {}) = 0;
  /// Sets every element to zero.
  virtual void zero(Tensor& t) = 0;
  /// dst[row0 + i, :] = src[i, :].  src [n, ...], dst [capacity, ...] of the same row size.
  virtual void copy_rows(const Tensor& src, Tensor& dst, int64_t row0) = 0;
  /// dst[rows[i], :] = src[i, :] (the KV-cache write).  src [n, ...]; dst [capacity, ...]; rows i32 [n], each
  /// < capacity (callers validate: the index lives on the device).
  virtual void scatter_rows(const Tensor& src, Tensor& dst, const Tensor& rows) = 0;
  /// Causal softmax(q·kᵀ·scale)·v for one sequence: query i sees keys [0, positions[i]].
  /// q [n, heads, d]; k, v [capacity, kv_heads, d]; positions i32 [n]; out [n, heads · d].
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions, Tensor& out,
                         const AttentionParams& p) = 0;
  /// attention() for queries of many sequences whose keys and values are rows of one pool (a paged KV cache):
  /// query t sees the keys `keys` names for it (causal, grouped-query, as attention()).  q [n, heads, d];
  /// k, v [pool rows, kv_heads, d]; out [n, heads · d]. Row indices are read where the op runs: callers validate.
  virtual void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const PagedKeys& keys, Tensor& out,
                               const AttentionParams& p) = 0;
  /// The LoRA path of a batch whose rows carry different adapters, for one projection: out[t] += scale ·
  /// (x[t]·Aᵀ)·Bᵀ with the LoraEntry at `slot` of row t's table (LoraSource::device_table). row_tables holds n
  /// device addresses of such tables (8 bytes each, stored as i32 [n, 2]; 0: the row has no adapter); every rank
  /// is at most max_rank.  x [n, in]; out [n, out]; factors in the compute dtype.
  virtual void lora_rows(const Tensor& x, const Tensor& row_tables, int64_t slot, int32_t max_rank, Tensor& out) = 0;
  // --- Encoder ops (BERT-family embedders). By default each fails with ErrorKind::unsupported naming the backend
  // and the op; the CPU backend is the reference. ---

  /// out = layernorm(x + residual) per row: (y − mean(y)) / sqrt(var(y) + eps) · weight + bias, var the biased
  /// variance (torch.nn.LayerNorm). residual undefined: layernorm(x). out may alias x or residual (the post-norm
  /// residual add of BERT).  x, residual, out [rows, n]; weight, bias [n].
  virtual void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                          Tensor& out);
  /// out = gelu(x): x·Φ(x) with the exact erf (transformers' "gelu"), or its tanh approximation when `tanh` is set
  /// ("gelu_new", "gelu_pytorch_tanh"). out may alias x.  x, out of one shape.
  virtual void gelu(const Tensor& x, bool tanh, Tensor& out);
  /// out = gelu(x·Wᵀ + bias), gelu as gelu() computes it: an encoder's intermediate projection. The default runs
  /// linear() then gelu(). CUDA fuses the GELU into the GEMM's epilogue, in its tanh form for both (cuBLASLt has
  /// no other): against the erf form that moves an output by at most 4.8·10⁻⁴, less than half a bf16 step of
  /// outputs of 0.125 and more.
  virtual void linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool tanh, Tensor& out);
  /// Bidirectional softmax(q·kᵀ·scale + bias)·v within each sequence of a packed batch: query t of sequence s sees
  /// every key of s and no other (the padding mask of a padded batch, without the padding). Grouped-query as
  /// attention().  q [rows, heads, d]; k, v [rows, kv_heads, d]; out [rows, heads · d].
  virtual void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                                 const RelativeBias& bias, Tensor& out, const AttentionParams& p);
  /// One vector per sequence: out[s] = the mean, the elementwise max, the first row or the last row of x's rows
  /// [spans[s, 0], spans[s, 1]) (an empty span gives zeros); with `normalize`, out[s] is then divided by
  /// max(‖out[s]‖₂, 1e-12) (torch.nn.functional.normalize).  x [rows, n]; spans i32 [sequences, 2] on the device;
  /// out f32 [sequences, n].
  virtual void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out);

  /// out = silu(gate) ⊙ up.  All [rows, n].
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  /// out = a + b (elementwise; out may alias a or b).
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;

  // --- Backward twins (training) ---
  // Each is the gradient of the forward op named in its comment, checked against it by finite differences.
  // Parameter and cache gradients accumulate (+=); input gradients are written (=). By default each fails
  // with ErrorKind::unsupported naming the backend and the op.

  /// out = alpha · op(a)·op(b) + beta · out, op(t) = tᵀ when the flag says so, accumulated in f32.  a and b 2-D of
  /// one dtype (on the CPU, b not transposed may also be a bf16 or q8_0 upload_weight); out f32 or that dtype;
  /// op(a) [m, k], op(b) [k, n], out [m, n]. Gives linear's backward
  /// (W [out, in]): dX = dY·W, dW += dYᵀ·X (beta 1).
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p = {});
  /// dx = ∂/∂x of Σ d_out ⊙ rmsnorm(x, weight, eps) (weight frozen).  x, d_out, dx [rows, n]; weight [n].
  virtual void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx);
  /// rope's transpose in place: rotates each pair by −position·θ^(-2i/d), turning the gradient of rope's output
  /// into the gradient of its input.  dx [tokens, heads, head_dim]; positions i32 [tokens].
  virtual void rope_backward(Tensor& dx, const Tensor& positions, double theta);
  /// The gradients of out = silu(gate) ⊙ up: d_gate and d_up written.  All [rows, n].
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate, Tensor& d_up);
  /// attention's gradients for one sequence (same causal GQA semantics and p; the softmax is recomputed).
  /// d_out [n, heads · d]; grads.dq [n, heads, d] written; grads.dk, grads.dv [capacity, kv_heads, d] accumulated
  /// (rows past the last visible key untouched). grads holds handles: the op writes into their storage.
  virtual void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads grads,
                                  const AttentionParams& p);
  /// Σ over counted rows of −log softmax(logits[r])[targets[r]], and d_logits = scale · (softmax − onehot(target))
  /// per counted row, 0 on ignored rows (target −100).  logits f32 [rows, classes]; d_logits [rows, classes], f32 or
  /// the compute dtype; targets i32 [rows].
  /// A target outside [0, classes) that is not −100 is bad input.
  virtual double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits);
  /// out = x ⊙ keep / (1 − p), keep drawn by dropout_keeps(seed, i, p) for element i (backend/dropout_mask.h): the
  /// same mask for the same seed and shape on every backend, so applying it to a gradient gives dropout's backward.
  /// p in [0, 1); out may alias x.  x, out of one shape.
  virtual void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out);
  /// d_table[ids[t], :] += d_out[t, :] (a trainable embedding).  ids i32 [tokens]; d_out [tokens, hidden];
  /// d_table [vocab, hidden].
  virtual void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table);
};

/// The CPU backend (the reference: f32 activations, wick's thread pool); `weights` says how upload_weight keeps a weight matrix (wick/model.h's CpuWeights).
std::unique_ptr<Backend> make_cpu_backend(CpuWeights weights = CpuWeights::native);
/// The backend for `device`; unsupported when this build lacks it. `index`: which GPU of the machine (CUDA; the
/// backend's calls must then come from threads whose current device it is: Backend::bind_thread); −1, the default:
/// the calling thread's current GPU. The CPU ignores it.
std::unique_ptr<Backend> make_backend(Device device, CpuWeights cpu_weights = CpuWeights::native, int index = -1);

}  // namespace wick
