// iALS on the GPU: the host side. Factor storage, the interactions (resident, the item side
// transposed on the GPU; or streamed from pinned host memory through two staging buffers on a
// copy stream), the row chunks and segments the kernels work on, the Gram matrix (cuBLAS SYRK),
// the CG and Cholesky solves, the objective, fold-in. Kernels: models/ials/ials_*.cu.
#include "models/ials/ials_cuda_solver.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "backend/cuda/device_csr.h"
#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/launch.h"
#include "core/log.h"

namespace recforge::backend::cuda {
namespace {

constexpr int kMaxFactors = 16384;          // cg_observed_large: 2 kp floats of shared memory
constexpr int kLossBlocks = 256;            // partial sums per objective term
constexpr double kGiB = 1073741824.0;

// Padded factor count: 32, 64, 128 or 256 (register tiles), else a multiple of 256.
int padded_factors(int k) {
  for (int p : {32, 64, 128, 256})
    if (k <= p) return p;
  return (k + 255) / 256 * 256;
}

int64_t storage_bytes(Storage s) { return s == Storage::kFloat32 ? 4 : 2; }

// Rows of one side solved together, their interactions and their segments.
struct Chunk {
  int64_t row0 = 0, nrows = 0;           // rows [row0, row0 + nrows)
  int64_t nnz_begin = 0, nnz_end = 0;    // their interactions
  int64_t seg0 = 0, nseg = 0;            // their segments
};

// One side (users or items) of the interactions on the GPU, with its plan.
struct Side {
  int64_t rows = 0, cols = 0, nnz = 0;
  std::vector<int64_t> h_indptr;       // host copy, for planning
  DeviceBuffer<int64_t> indptr;        // always on the device
  DeviceBuffer<int32_t> indices;       // resident mode
  DeviceBuffer<float> values;
  PinnedBuffer<int32_t> p_indices;     // streaming mode
  PinnedBuffer<float> p_values;
  std::vector<Chunk> chunks;
  DeviceBuffer<int32_t> seg_row;       // absolute row of each segment
  DeviceBuffer<int64_t> seg_begin;     // first interaction of each segment
  DeviceBuffer<int64_t> seg_ptr;       // rows + 1: first segment of each row
  DeviceBuffer<int32_t> order;         // per chunk: its rows, longest first (Cholesky)
  int64_t max_rows = 0, max_segs = 0, max_nnz = 0;
  bool streamed = false;
};

// Identifies the host matrices an IalsCudaSolver has moved to the GPU.
struct DataKey {
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;
  const void* d = nullptr;
  int64_t nnz = -1;
  uint64_t sample = 0;
  bool operator==(const DataKey& o) const {
    return a == o.a && b == o.b && c == o.c && d == o.d && nnz == o.nnz && sample == o.sample;
  }
};

DataKey key_of(const data::Csr& ui, const data::Csr& iu) {
  DataKey k{ui.indptr.data(), ui.indices.data(), ui.data.data(), iu.indices.data(), ui.nnz(), 0};
  const int64_t n = ui.nnz();
  for (int s = 0; s < 64 && n > 0; ++s) {  // a cheap sample of the contents
    const int64_t e = n * s / 64;
    uint32_t bits = 0;
    std::memcpy(&bits, &ui.data[static_cast<size_t>(e)], sizeof bits);
    k.sample = k.sample * 1000003u + static_cast<uint64_t>(ui.indices[static_cast<size_t>(e)]) * 31u + bits;
  }
  return k;
}

class IalsCudaSolverImpl : public IalsCudaSolver {
 public:
  IalsCudaSolverImpl(std::shared_ptr<CudaResources> gpu, int64_t n_users, int64_t n_items, int factors,
              const IalsCudaSolverOptions& o)
      : gpu_(std::move(gpu)), nu_(n_users), ni_(n_items), k_(factors), kp_(padded_factors(factors)),
        sb_(storage_bytes(o.storage)), o_(o) {
    DeviceScope scope(g().device());
    const int64_t need = (nu_ + ni_) * kp_ * sb_;
    const int64_t free = g().free_bytes();
    if (need > free * 9 / 10)
      fail("the factors need {:.2f} GiB of GPU memory ({} users + {} items × {} factors, {}) and "
           "{} has {:.2f} GiB free; lower model.factors or use model.dtype float16",
           need / kGiB, nu_, ni_, k_, storage_name(o_.storage), g().description(), free / kGiB);
    users_.reset(nu_ * kp_ * sb_);
    items_.reset(ni_ * kp_ * sb_);
    if (users_.bytes() > 0) RF_CHECK_CUDA(cudaMemsetAsync(users_.data(), 0, users_.bytes(), g().stream()));
    if (items_.bytes() > 0) RF_CHECK_CUDA(cudaMemsetAsync(items_.data(), 0, items_.bytes(), g().stream()));
    flags_.reset(2);
    g().synchronize();
  }

  ~IalsCudaSolverImpl() override {
    // Wait for work that still reads the buffers (destructors never throw).
    int previous = 0;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != g().device()) cudaSetDevice(g().device());
    cudaStreamSynchronize(g().stream());
    cudaStreamSynchronize(g().copy_stream());
    if (previous != g().device()) cudaSetDevice(previous);
  }

  void set_factors(const Matrix& users, const Matrix& items) override {
    RF_ASSERT(users.rows == nu_ && items.rows == ni_ && users.cols == k_ && items.cols == k_,
              "IalsCudaSolver::set_factors: shapes differ from the model's");
    DeviceScope scope(g().device());
    upload(users, users_.data());
    upload(items, items_.data());
    g().synchronize();
  }

  void get_factors(Matrix& users, Matrix& items) override {
    DeviceScope scope(g().device());
    download(users_.data(), nu_, users);
    download(items_.data(), ni_, items);
  }

  void iterate(const data::Csr& ui, const data::Csr& iu, const std::vector<float>& item_weights,
               int iteration) override {
    DeviceScope scope(g().device());
    ensure_data(ui, iu);
    const float* w = ensure_weights(item_weights);
    solve(ui_, items_.data(), ni_, users_.data(), w, nullptr,
          fmt::format("iteration {} produced non-finite user factors", iteration));
    solve(iu_, users_.data(), nu_, items_.data(), nullptr, w,
          fmt::format("iteration {} produced non-finite item factors", iteration));
  }

  double loss(const data::Csr& ui, const data::Csr& iu,
              const std::vector<float>& item_weights) override {
    DeviceScope scope(g().device());
    ensure_data(ui, iu);
    const float* w = ensure_weights(item_weights);
    TempBuffer<float> gx(g(), int64_t{kp_} * kp_), gy(g(), int64_t{kp_} * kp_);
    gram(users_.data(), nu_, nullptr, 1.0, gx.data());
    gram(items_.data(), ni_, w, 1.0, gy.data());
    const LossParts l = loss_parts(gx.data(), gy.data(), ui_, users_.data(), items_.data());
    return l.observed + o_.solve.unobserved_weight * l.unobserved + l.reg_users + l.reg_items;
  }

  Matrix fold_in(const data::Csr& rows, const std::vector<float>& item_weights) override {
    RF_ASSERT(rows.cols == ni_, "IalsCudaSolver::fold_in: rows must have one column per item");
    DeviceScope scope(g().device());
    Matrix out;
    out.rows = rows.rows;
    out.cols = k_;
    out.data.assign(static_cast<size_t>(rows.rows * k_), 0.f);
    if (rows.rows == 0) return out;
    const float* w = ensure_weights(item_weights);
    Side side;
    DeviceCsr d = upload_csr(g(), rows);
    side.rows = rows.rows;
    side.cols = rows.cols;
    side.nnz = d.nnz;
    side.h_indptr = rows.indptr;
    side.indptr = std::move(d.indptr);
    side.indices = std::move(d.indices);
    side.values = std::move(d.values);
    plan(side, workspace_budget(), 0);
    DeviceBuffer<unsigned char> x(rows.rows * kp_ * sb_);
    RF_CHECK_CUDA(cudaMemsetAsync(x.data(), 0, x.bytes(), g().stream()));
    solve(side, items_.data(), ni_, x.data(), w, nullptr, "fold-in produced non-finite factors");
    download(x.data(), rows.rows, out);
    return out;
  }

  std::string data_mode() const override { return mode_; }

 protected:
  CudaResources& g() const { return *gpu_; }

  // ---- factors -------------------------------------------------------------------------------

  // Rows per transfer chunk of set_factors/get_factors (256 MiB of float32).
  int64_t transfer_rows() const { return std::max<int64_t>(1, (int64_t{256} << 20) / (4 * k_)); }

  void upload(const Matrix& m, void* dst) {
    const int64_t step = std::min(transfer_rows(), std::max<int64_t>(m.rows, 1));
    TempBuffer<float> tmp(g(), step * k_);
    for (int64_t r0 = 0; r0 < m.rows; r0 += step) {
      const int64_t n = std::min(step, m.rows - r0);
      copy_to_device(tmp.data(), m.row(r0), n * k_, g().stream());
      launch_pack(o_.storage, tmp.data(), n, k_, kp_, static_cast<char*>(dst) + r0 * kp_ * sb_,
                  g().stream());
    }
  }

  void download(const void* src, int64_t rows, Matrix& m) {
    m.rows = rows;
    m.cols = k_;
    m.data.resize(static_cast<size_t>(rows * k_));
    const int64_t step = std::min(transfer_rows(), std::max<int64_t>(rows, 1));
    TempBuffer<float> tmp(g(), step * k_);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      const int64_t n = std::min(step, rows - r0);
      launch_unpack(o_.storage, static_cast<const char*>(src) + r0 * kp_ * sb_, n, k_, kp_,
                    tmp.data(), g().stream());
      copy_to_host(m.row(r0), tmp.data(), n * k_, g().stream());
      g().synchronize();  // the next chunk reuses tmp; the host reads m
    }
  }

  // Device copy of the item weights (nullptr when uniform).
  const float* ensure_weights(const std::vector<float>& w) {
    if (w.empty()) return nullptr;
    RF_ASSERT(static_cast<int64_t>(w.size()) == ni_, "IalsCudaSolver: one item weight per item");
    if (w != weights_host_) {
      weights_.reset(ni_);
      copy_to_device(weights_.data(), w.data(), ni_, g().stream());
      weights_host_ = w;
    }
    return weights_.data();
  }

  // ---- data ----------------------------------------------------------------------------------

  int64_t workspace_budget() {
    const int64_t free = g().free_bytes();
    return std::clamp<int64_t>(free / 3, int64_t{64} << 20, int64_t{4} << 30);
  }

  void ensure_data(const data::Csr& ui, const data::Csr& iu) {
    if (ui.rows != nu_ || ui.cols != ni_ || iu.rows != ni_ || iu.cols != nu_ || ui.nnz() != iu.nnz())
      fail("iALS on the GPU: the interaction matrices are {}×{} and {}×{} with {} and {} values; "
           "expected {}×{} and its transpose",
           ui.rows, ui.cols, iu.rows, iu.cols, ui.nnz(), iu.nnz(), nu_, ni_);
    const DataKey key = key_of(ui, iu);
    if (!mode_.empty() && key == key_) return;
    ui_ = Side();
    iu_ = Side();
    staging_.reset();
    mode_.clear();
    const int64_t nnz = ui.nnz();
    const int64_t free = g().free_bytes();
    // Resident: both sides (8 bytes per interaction each) plus the transpose's sort buffers
    // (keys in and out, values, CUB's own) and a minimal solver workspace.
    const int64_t resident = 2 * nnz * 8 + (nu_ + ni_ + 2) * 8;
    const int64_t transient = 32 * nnz + (int64_t{256} << 20);
    bool stream = o_.streaming == Streaming::kOn;
    if (o_.streaming == Streaming::kAuto) stream = resident + transient > free * 85 / 100;
    if (o_.streaming == Streaming::kOff && resident + transient > free)
      fail("train.gpu_streaming is off, but the interactions need {:.2f} GiB of GPU memory and {} "
           "has {:.2f} GiB free; set train.gpu_streaming: auto to stream them from host memory",
           (resident + transient) / kGiB, g().description(), free / kGiB);
    if (!stream) {
      DeviceCsr dui = upload_csr(g(), ui);
      DeviceCsr diu = transpose(g(), dui);  // the item side, built on the GPU
      take(ui_, ui.indptr, std::move(dui));
      std::vector<int64_t> indptr(static_cast<size_t>(ni_ + 1));
      copy_to_host(indptr.data(), diu.indptr.data(), ni_ + 1, g().stream());
      g().synchronize();
      RF_ASSERT(indptr == iu.indptr, "the transpose built on the GPU differs from item_users");
      take(iu_, indptr, std::move(diu));
      const int64_t budget = workspace_budget();
      plan(ui_, budget, 0);
      plan(iu_, budget, 0);
      mode_ = fmt::format("resident in GPU memory ({:.2f} GiB of {:.2f} GiB free; the item side "
                          "transposed on the GPU)",
                          resident / kGiB, free / kGiB);
    } else {
      pin(ui_, ui);
      pin(iu_, iu);
      int64_t longest = 0;
      for (const Side* s : {&ui_, &iu_})
        for (int64_t r = 0; r < s->rows; ++r)
          longest = std::max(longest, s->h_indptr[r + 1] - s->h_indptr[r]);
      int64_t cap = o_.stream_batch_nnz;
      if (cap <= 0) cap = std::clamp<int64_t>(free / 10 / 16, int64_t{1} << 20, int64_t{1} << 26);
      cap = std::max({cap, longest, int64_t{1}});
      staging_ = std::make_unique<Staging>();
      for (int b = 0; b < 2; ++b) {
        staging_->idx[b].reset(cap);
        staging_->val[b].reset(cap);
      }
      staging_->capacity = cap;
      const int64_t budget = workspace_budget();
      plan(ui_, budget, cap);
      plan(iu_, budget, cap);
      mode_ = fmt::format("streamed from pinned host memory ({} and {} batches of at most {} "
                          "interactions, double-buffered on a copy stream; resident they would "
                          "need {:.2f} GiB with {:.2f} GiB free)",
                          ui_.chunks.size(), iu_.chunks.size(), cap, (resident + transient) / kGiB,
                          free / kGiB);
    }
    key_ = key;
    log().info("iALS on {}: interactions {}", g().description(), mode_);
  }

  static void take(Side& s, const std::vector<int64_t>& h_indptr, DeviceCsr&& d) {
    s.rows = d.rows;
    s.cols = d.cols;
    s.nnz = d.nnz;
    s.h_indptr = h_indptr;
    s.indptr = std::move(d.indptr);
    s.indices = std::move(d.indices);
    s.values = std::move(d.values);
  }

  // Streaming mode: offsets on the device, interactions in pinned host memory.
  void pin(Side& s, const data::Csr& m) {
    s.rows = m.rows;
    s.cols = m.cols;
    s.nnz = m.nnz();
    s.h_indptr = m.indptr;
    s.streamed = true;
    s.indptr.reset(s.rows + 1);
    copy_to_device(s.indptr.data(), m.indptr.data(), s.rows + 1, g().stream());
    s.p_indices = PinnedBuffer<int32_t>(s.nnz);
    s.p_values = PinnedBuffer<float>(s.nnz);
    if (s.nnz > 0) {
      std::memcpy(s.p_indices.data(), m.indices.data(), static_cast<size_t>(s.nnz) * sizeof(int32_t));
      std::memcpy(s.p_values.data(), m.data.data(), static_cast<size_t>(s.nnz) * sizeof(float));
    }
  }

  // Splits a side into chunks whose CG workspace ((4 rows + segments) × kp floats) stays within
  // `budget` bytes and, when streaming, whose interactions fit a staging buffer (`max_nnz`);
  // builds the segments and the longest-first row order, and uploads them.
  void plan(Side& s, int64_t budget, int64_t max_nnz) {
    std::vector<int32_t> seg_row;
    std::vector<int64_t> seg_begin, seg_ptr(static_cast<size_t>(s.rows + 1));
    std::vector<int32_t> order(static_cast<size_t>(s.rows));
    s.chunks.clear();
    const int64_t row_bytes = (4 * int64_t{kp_} + 1) * 4, seg_bytes = int64_t{kp_} * 4;
    Chunk c;
    auto close = [&](int64_t next_row) {
      c.nrows = next_row - c.row0;
      c.nseg = static_cast<int64_t>(seg_row.size()) - c.seg0;
      if (c.nrows > 0) s.chunks.push_back(c);
      c = Chunk();
      c.row0 = next_row;
      c.nnz_begin = c.nnz_end = s.h_indptr[static_cast<size_t>(next_row)];
      c.seg0 = static_cast<int64_t>(seg_row.size());
    };
    close(0);
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t n = s.h_indptr[r + 1] - s.h_indptr[r];
      const int64_t nseg = (n + kSegmentItems - 1) / kSegmentItems;
      const int64_t rows_now = r - c.row0, segs_now = static_cast<int64_t>(seg_row.size()) - c.seg0;
      const bool over_ws = (rows_now + 1) * row_bytes + (segs_now + nseg) * seg_bytes > budget;
      const bool over_nnz = max_nnz > 0 && c.nnz_end - c.nnz_begin + n > max_nnz;
      if (rows_now > 0 && (over_ws || over_nnz)) close(r);
      seg_ptr[static_cast<size_t>(r)] = static_cast<int64_t>(seg_row.size());
      for (int64_t b = s.h_indptr[r]; b < s.h_indptr[r + 1]; b += kSegmentItems) {
        seg_row.push_back(static_cast<int32_t>(r));
        seg_begin.push_back(b);
      }
      c.nnz_end = s.h_indptr[r + 1];
    }
    seg_ptr[static_cast<size_t>(s.rows)] = static_cast<int64_t>(seg_row.size());
    close(s.rows);
    s.max_rows = s.max_segs = s.max_nnz = 0;
    for (const Chunk& ch : s.chunks) {
      s.max_rows = std::max(s.max_rows, ch.nrows);
      s.max_segs = std::max(s.max_segs, ch.nseg);
      s.max_nnz = std::max(s.max_nnz, ch.nnz_end - ch.nnz_begin);
      int32_t* o = order.data() + ch.row0;
      std::iota(o, o + ch.nrows, 0);
      std::stable_sort(o, o + ch.nrows, [&](int32_t a, int32_t b) {
        return s.h_indptr[ch.row0 + a + 1] - s.h_indptr[ch.row0 + a] >
               s.h_indptr[ch.row0 + b + 1] - s.h_indptr[ch.row0 + b];
      });
    }
    const int64_t nseg = static_cast<int64_t>(seg_row.size());
    s.seg_row.reset(nseg);
    s.seg_begin.reset(nseg);
    s.seg_ptr.reset(s.rows + 1);
    s.order.reset(s.rows);
    copy_to_device(s.seg_row.data(), seg_row.data(), nseg, g().stream());
    copy_to_device(s.seg_begin.data(), seg_begin.data(), nseg, g().stream());
    copy_to_device(s.seg_ptr.data(), seg_ptr.data(), s.rows + 1, g().stream());
    copy_to_device(s.order.data(), order.data(), s.rows, g().stream());
    g().synchronize();  // the host vectors die here
  }

  // A chunk's interactions on the device: resident pointers, or a staging buffer filled on the
  // copy stream (waiting until the compute stream is done with that buffer's previous batch).
  struct Staged {
    const int32_t* indices;
    const float* values;
    int64_t base;
    int buffer;  // staging buffer, −1 when resident
  };

  Staged stage(Side& s, const Chunk& c) {
    if (!s.streamed) return {s.indices.data(), s.values.data(), 0, -1};
    RF_ASSERT(staging_ != nullptr, "streaming: no staging buffers");
    Staging& sg = *staging_;
    const int b = sg.next;
    sg.next ^= 1;
    const int64_t n = c.nnz_end - c.nnz_begin;
    RF_ASSERT(n <= sg.capacity, "streaming: a batch exceeds the staging buffer");
    sg.consumed[b].wait_on(g().copy_stream());
    copy_to_device(sg.idx[b].data(), s.p_indices.data() + c.nnz_begin, n, g().copy_stream());
    copy_to_device(sg.val[b].data(), s.p_values.data() + c.nnz_begin, n, g().copy_stream());
    sg.copied[b].record(g().copy_stream());
    sg.copied[b].wait_on(g().stream());
    return {sg.idx[b].data(), sg.val[b].data(), c.nnz_begin, b};
  }

  // Marks the end of the compute stream's use of a staged batch.
  void release(const Staged& d) {
    if (d.buffer >= 0) staging_->consumed[d.buffer].record(g().stream());
  }

  RowsView rows_view(const Side& s, const Chunk& c, const Staged& d) const {
    RowsView v;
    v.indptr = s.indptr.data();
    v.indices = d.indices;
    v.values = d.values;
    v.base = d.base;
    v.row0 = c.row0;
    v.nrows = c.nrows;
    return v;
  }

  static Segments segments(const Side& s, const Chunk& c) {
    Segments sg;
    sg.row = s.seg_row.data();
    sg.begin = s.seg_begin.data();
    sg.ptr = s.seg_ptr.data();
    sg.seg0 = c.seg0;
    sg.nseg = c.nseg;
    return sg;
  }

  // The loss's parts on this GPU, each the sum of kLossBlocks partials.
  struct LossParts {
    double observed = 0;    // over `side`'s rows (launch_loss_observed)
    double unobserved = 0;  // ⟨gx, gy⟩, before the unobserved weight
    double reg_users = 0, reg_items = 0;
  };

  // gx, gy: the users' and the (weighted) items' Gram matrices (kp × kp, reduced over the ranks
  // when distributed); `side`'s rows have the factors x, the other side's y.
  LossParts loss_parts(const float* gx, const float* gy, Side& side, const void* x,
                       const void* y) {
    const cudaStream_t s = g().stream();
    const int64_t slices = 3 + static_cast<int64_t>(side.chunks.size());
    TempBuffer<double> part(g(), slices * kLossBlocks);
    launch_dot(gx, gy, int64_t{kp_} * kp_, part.data(), kLossBlocks, s);
    const auto& p = o_.solve;
    launch_loss_reg(o_.storage, users_.data(), ui_.indptr.data(), nu_, kp_, p.regularization,
                    p.reg_exp, p.reg_offset, part.data() + kLossBlocks, kLossBlocks, s);
    launch_loss_reg(o_.storage, items_.data(), iu_.indptr.data(), ni_, kp_, p.regularization,
                    p.reg_exp, p.reg_offset, part.data() + 2 * kLossBlocks, kLossBlocks, s);
    for (size_t c = 0; c < side.chunks.size(); ++c) {
      const Chunk& ch = side.chunks[c];
      const Staged d = stage(side, ch);
      launch_loss_observed(o_.storage, rows_view(side, ch, d), segments(side, ch), x, y, kp_,
                           p.alpha, part.data() + (3 + c) * kLossBlocks, kLossBlocks, s);
      release(d);
    }
    std::vector<double> h(static_cast<size_t>(slices * kLossBlocks));
    copy_to_host(h.data(), part.data(), slices * kLossBlocks, s);
    g().synchronize();
    auto slice = [&](int64_t i) {
      double t = 0;
      for (int b = 0; b < kLossBlocks; ++b) t += h[static_cast<size_t>(i * kLossBlocks + b)];
      return t;
    };
    LossParts out;
    for (int64_t i = 3; i < slices; ++i) out.observed += slice(i);
    out.unobserved = slice(0);
    out.reg_users = slice(1);
    out.reg_items = slice(2);
    return out;
  }

  // ---- solves --------------------------------------------------------------------------------

  // out (kp × kp, symmetric) = alpha · Σ_r w_r y_r y_rᵀ over the rows of y (w = 1 when null).
  void gram(const void* y, int64_t rows, const float* w, double alpha, float* out) {
    const cudaStream_t s = g().stream();
    RF_CHECK_CUDA(cudaMemsetAsync(out, 0, sizeof(float) * kp_ * kp_, s));
    if (rows == 0) return;
    const float a = static_cast<float>(alpha), one = 1.f;
    if (o_.storage == Storage::kFloat32 && w == nullptr) {
      RF_ASSERT(rows <= INT32_MAX, "gram: too many rows for one SYRK");
      // Row-major rows × kp is column-major kp × rows: C = a A Aᵀ (lower triangle).
      RF_CHECK_CUBLAS(cublasSsyrk(g().cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, kp_,
                                  static_cast<int>(rows), &a, static_cast<const float*>(y), kp_,
                                  &one, out, kp_));
    } else {
      const int64_t step = std::min<int64_t>(rows, std::max<int64_t>(1, (int64_t{256} << 20) / (4 * kp_)));
      TempBuffer<float> tmp(g(), step * kp_);
      for (int64_t r0 = 0; r0 < rows; r0 += step) {
        const int64_t n = std::min(step, rows - r0);
        launch_convert_scale(o_.storage, static_cast<const char*>(y) + r0 * kp_ * sb_, n, kp_,
                             w ? w + r0 : nullptr, tmp.data(), s);
        RF_CHECK_CUBLAS(cublasSsyrk(g().cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, kp_,
                                    static_cast<int>(n), &a, tmp.data(), kp_, &one, out, kp_));
      }
    }
    launch_symmetrize(out, kp_, s);
  }

  // out (nrows × kp) = x (nrows × kp) · G, as column-major G · xᵀ (G symmetric).
  void times_gram(const float* x, const float* gm, float* out, int64_t nrows) {
    const float one = 1.f, zero = 0.f;
    RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_N, CUBLAS_OP_N, kp_, static_cast<int>(nrows),
                                kp_, &one, gm, kp_, x, kp_, &zero, out, kp_));
  }

  // Solves every row of side `s` against the fixed factors y (ny rows), updating x in place.
  // col_w: per-row weights of y in the Gram matrix; row_w: per-row scale of the Gram term.
  void solve(Side& s, const void* y, int64_t ny, void* x, const float* col_w, const float* row_w,
             const std::string& nonfinite) {
    TempBuffer<float> gm(g(), int64_t{kp_} * kp_);
    gram(y, ny, col_w, o_.solve.unobserved_weight, gm.data());
    solve_with_gram(s, y, x, gm.data(), row_w, nonfinite);
  }

  // The solves of `solve` with the Gram matrix `gm` (kp × kp, device) given.
  void solve_with_gram(Side& s, const void* y, void* x, const float* gm, const float* row_w,
                       const std::string& nonfinite) {
    const cudaStream_t st = g().stream();
    const auto& p = o_.solve;
    RF_CHECK_CUDA(cudaMemsetAsync(flags_.data(), 0, 2 * sizeof(int), st));
    SolveArgs args;
    args.alpha = static_cast<float>(p.alpha);
    args.reg = p.regularization;
    args.reg_exp = p.reg_exp;
    args.reg_offset = p.reg_offset;
    args.row_scale = row_w;
    if (p.cholesky) {
      const int64_t slot = cholesky_slot_floats(k_);
      const int sms = g().properties().multiProcessorCount;
      int64_t nslots = std::min<int64_t>(std::max<int64_t>(s.max_rows, 1), int64_t{8} * sms);
      if (slot > 0)
        nslots = std::clamp<int64_t>(workspace_budget() / (slot * 4), 1, std::min<int64_t>(nslots, 2 * sms));
      TempBuffer<float> slots(g(), slot * nslots);
      for (const Chunk& c : s.chunks) {
        const Staged d = stage(s, c);
        launch_cholesky(o_.storage, rows_view(s, c, d), s.order.data() + c.row0, y, gm, kp_,
                        k_, args, x, slots.data(),
                        static_cast<int>(std::min<int64_t>(nslots, c.nrows)), flags_.data(), st);
        release(d);
      }
    } else {
      const bool alias = o_.storage == Storage::kFloat32;  // solve in place
      const int64_t n = s.max_rows * kp_;
      TempBuffer<float> x32(g(), alias ? 0 : n), r(g(), n), pv(g(), n), ap(g(), n);
      TempBuffer<float> rs(g(), s.max_rows), seg_obs(g(), s.max_segs * kp_);
      for (const Chunk& c : s.chunks) {
        const Staged d = stage(s, c);
        const RowsView rv = rows_view(s, c, d);
        const Segments sg = segments(s, c);
        void* xc = static_cast<char*>(x) + c.row0 * kp_ * sb_;
        CgBuffers b;
        b.x = alias ? static_cast<float*>(xc) : x32.data();
        b.r = r.data();
        b.p = pv.data();
        b.ap = ap.data();
        b.rs = rs.data();
        b.seg_obs = seg_obs.data();
        b.kp = kp_;
        b.k = k_;
        if (!alias) launch_load_rows(o_.storage, xc, b.x, c.nrows * kp_, st);
        times_gram(b.x, gm, b.ap, c.nrows);
        launch_cg_observed(o_.storage, true, rv, sg, y, b, args.alpha, st);
        launch_cg_update(true, rv, sg, b, args, st);
        for (int step = 0; step < p.cg_steps; ++step) {
          times_gram(b.p, gm, b.ap, c.nrows);
          launch_cg_observed(o_.storage, false, rv, sg, y, b, args.alpha, st);
          launch_cg_update(false, rv, sg, b, args, st);
        }
        launch_store_rows(o_.storage, b.x, xc, c.nrows * kp_, !alias, flags_.data(), st);
        release(d);
      }
    }
    int flags[2] = {0, 0};
    copy_to_host(flags, flags_.data(), 2, st);
    g().synchronize();
    if (flags[1]) {
      // With λ > 0 the exact system is positive definite: float32 lost it to the confidences'
      // range (the CPU solver solves such rows in double instead).
      if (p.regularization > 0)
        fail("iALS on {}: a row's system is not positive definite in float32 although "
             "model.regularization is {}: its confidences (alpha {} times the interaction "
             "values) span too many orders of magnitude for float32; expected smaller weights, "
             "e.g. log(1 + value), or train on the CPU, which solves such rows in double",
             g().description(), p.regularization, p.alpha);
      throw InternalError("iALS: a row's system is not positive definite (regularization 0 with "
                          "too few interactions?)",
                          __FILE__, __LINE__);
    }
    if (flags[0])
      fail("iALS on {}: {} (NaN or infinity{}); check the interaction weights and lower "
           "model.alpha or raise model.regularization",
           g().description(), nonfinite,
           o_.storage == Storage::kFloat32 ? "" : ", or beyond the range of the storage type");
  }

  struct Staging {
    int64_t capacity = 0;
    DeviceBuffer<int32_t> idx[2];
    DeviceBuffer<float> val[2];
    CudaEvent copied[2], consumed[2];
    int next = 0;
  };

  std::shared_ptr<CudaResources> gpu_;
  int64_t nu_, ni_;
  int k_, kp_;
  int64_t sb_;
  IalsCudaSolverOptions o_;
  DeviceBuffer<unsigned char> users_, items_;  // rows × kp storage elements
  DeviceBuffer<int> flags_;                    // [0] non-finite factors, [1] not positive definite
  DeviceBuffer<float> weights_;
  std::vector<float> weights_host_;
  Side ui_, iu_;
  std::unique_ptr<Staging> staging_;  // streaming mode only
  DataKey key_;
  std::string mode_;
};

// One rank's share of a distributed model (IalsCudaShard): the single-GPU solver over the
// rank's own rows (users_, items_ hold them), with the fetched rows of the other side in
// needed_items_ / needed_users_ and the rank's two CSRs uploaded as they are (no transpose).
class IalsCudaShardImpl final : public IalsCudaSolverImpl, public IalsCudaShard {
 public:
  IalsCudaShardImpl(std::shared_ptr<CudaResources> gpu, const data::Csr& ui, const data::Csr& iu,
                    int factors, const IalsCudaSolverOptions& o, const std::vector<float>& w)
      : IalsCudaSolverImpl(std::move(gpu), ui.rows, iu.rows, factors, o), w_host_(w) {
    if (o.storage != Storage::kFloat32)
      fail("model.dtype {} across processes: a distributed run on GPUs stores float32 factors; "
           "set model.dtype: float32",
           storage_name(o.storage));
    DeviceScope scope(g().device());
    needed_items_.reset(ui.cols * kp_);
    needed_users_.reset(iu.cols * kp_);
    for (auto* b : {&needed_items_, &needed_users_})
      if (b->bytes() > 0) RF_CHECK_CUDA(cudaMemsetAsync(b->data(), 0, b->bytes(), g().stream()));
    take(ui_, ui.indptr, upload_csr(g(), ui));
    take(iu_, iu.indptr, upload_csr(g(), iu));
    const int64_t budget = workspace_budget();
    plan(ui_, budget, 0);
    plan(iu_, budget, 0);
    mode_ = "resident in GPU memory (a distributed run's shard)";
    g().synchronize();
  }

  void set_rows(const Matrix& users, const Matrix& items) override {
    set_factors(users, items);
    users_fresh_ = false;
  }
  void get_rows(Matrix& users, Matrix& items) override { get_factors(users, items); }

  void half(bool user_half, Collectives& c, int iteration) override {
    DeviceScope scope(g().device());
    const float* w = ensure_weights(w_host_);
    void* stream = g().stream();
    TempBuffer<float> gm(g(), int64_t{kp_} * kp_);
    if (user_half) {
      gram(items_.data(), ni_, w, o_.solve.unobserved_weight, gm.data());
      c.allreduce_sum(gm.data(), int64_t{kp_} * kp_, stream);
      c.exchange(true, static_cast<const float*>(static_cast<const void*>(items_.data())),
                 needed_items_.data(), kp_, stream);
      solve_with_gram(ui_, needed_items_.data(), users_.data(), gm.data(), nullptr,
                      fmt::format("iteration {} produced non-finite user factors", iteration));
      users_fresh_ = false;
    } else {
      gram(users_.data(), nu_, nullptr, o_.solve.unobserved_weight, gm.data());
      c.allreduce_sum(gm.data(), int64_t{kp_} * kp_, stream);
      c.exchange(false, static_cast<const float*>(static_cast<const void*>(users_.data())),
                 needed_users_.data(), kp_, stream);
      solve_with_gram(iu_, needed_users_.data(), items_.data(), gm.data(), w,
                      fmt::format("iteration {} produced non-finite item factors", iteration));
      users_fresh_ = true;  // needed_users_ holds the rows the items were solved against
    }
  }

  void loss_terms(Collectives& c, double terms[3]) override {
    DeviceScope scope(g().device());
    const float* w = ensure_weights(w_host_);
    const cudaStream_t s = g().stream();
    if (!users_fresh_) {
      c.exchange(false, static_cast<const float*>(static_cast<const void*>(users_.data())),
                 needed_users_.data(), kp_, s);
      users_fresh_ = true;
    }
    TempBuffer<float> gx(g(), int64_t{kp_} * kp_), gy(g(), int64_t{kp_} * kp_);
    gram(users_.data(), nu_, nullptr, 1.0, gx.data());
    gram(items_.data(), ni_, w, 1.0, gy.data());
    c.allreduce_sum(gx.data(), int64_t{kp_} * kp_, s);
    c.allreduce_sum(gy.data(), int64_t{kp_} * kp_, s);
    // Over the rank's item rows, against the users they need.
    const LossParts l = loss_parts(gx.data(), gy.data(), iu_, items_.data(), needed_users_.data());
    terms[0] = l.observed;
    terms[1] = l.reg_users + l.reg_items;
    terms[2] = o_.solve.unobserved_weight * l.unobserved;
  }

  int row_floats() const override { return kp_; }
  std::string description() const override { return gpu_->description(); }

 private:
  std::vector<float> w_host_;                       // the rank's items' unobserved weights
  DeviceBuffer<float> needed_items_, needed_users_;  // the other side's fetched rows
  bool users_fresh_ = false;                        // needed_users_ matches users_
};

}  // namespace

std::unique_ptr<IalsCudaShard> make_ials_cuda_shard(std::shared_ptr<CudaResources> gpu,
                                                   const data::Csr& user_items,
                                                   const data::Csr& item_users, int factors,
                                                   const IalsCudaSolverOptions& options,
                                                   const std::vector<float>& item_weights) {
  check_gpu_solver(factors, options.solve);
  if (factors > kMaxFactors)
    fail("model.factors is {}; the GPU solver supports at most {}", factors, kMaxFactors);
  return std::make_unique<IalsCudaShardImpl>(std::move(gpu), user_items, item_users, factors,
                                             options, item_weights);
}

int max_factors() { return kMaxFactors; }

std::unique_ptr<IalsCudaSolver> make_ials_cuda_solver(std::shared_ptr<CudaResources> gpu, int64_t n_users,
                                       int64_t n_items, int factors, const IalsCudaSolverOptions& options) {
  RF_ASSERT(gpu != nullptr, "make_ials_cuda_solver: no GPU resources");
  if (factors < 1 || factors > kMaxFactors)
    fail("model.factors is {}; the GPU solver supports 1 to {} factors", factors, kMaxFactors);
  check_gpu_solver(factors, options.solve);
  if (n_users > INT32_MAX || n_items > INT32_MAX)
    fail("iALS on the GPU: {} users and {} items; expected at most {} of each", n_users, n_items,
         INT32_MAX);
  return std::make_unique<IalsCudaSolverImpl>(std::move(gpu), n_users, n_items, factors, options);
}

}  // namespace recforge::backend::cuda
