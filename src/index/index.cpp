#include "index/index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>

#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "eval/topk.h"
#include "index/faiss_cuda.h"

namespace recforge::index {

#if !defined(RECFORGE_WITH_FAISS_GPU)
// A build without GPU Faiss: choose_gpu() below never returns a GPU, so these are unreachable.
namespace detail {
std::unique_ptr<GpuIndex> copy_to_gpu(faiss::Index&, int, int64_t) {
  throw InternalError("copy_to_gpu: this recforge has no GPU Faiss", __FILE__, __LINE__);
}
void gpu_flat_l2_search(int, const float*, int64_t, int, const float*, int64_t, int, float*,
                        int64_t*) {
  throw InternalError("gpu_flat_l2_search: this recforge has no GPU Faiss", __FILE__, __LINE__);
}
}  // namespace detail
#endif

bool faiss_gpu_compiled() {
#if defined(RECFORGE_WITH_FAISS_GPU)
  return true;
#else
  return false;
#endif
}

namespace {

/// Why GPU Faiss 1.7.3 has no version of an index ("" when it has one): HNSW, or an IVF-PQ shape
/// that its kernels do not handle (8-bit codes only; the sub-quantizer counts it instantiates
/// with float32 lookup tables, which must also fit in 48 KiB of shared memory).
std::string gpu_unsupported(Type type, int64_t pq_m, int64_t pq_nbits) {
  if (type == Type::kHnsw) return "Faiss has no GPU HNSW index";
  if (type == Type::kIvfPq) {
    if (pq_nbits != 8) return fmt::format("GPU IVF-PQ needs index.pq_nbits 8 (it is {})", pq_nbits);
    static const int64_t kGpuPqM[] = {1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48};
    if (std::find(std::begin(kGpuPqM), std::end(kGpuPqM), pq_m) == std::end(kGpuPqM))
      return fmt::format(
          "GPU IVF-PQ needs index.pq_m (sub-quantizers) of 1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, "
          "40 or 48 (it is {})",
          pq_m);
  }
  return "";
}

/// The GPU that an index of this kind is searched on, or -1 for the CPU. `auto` asks recforge's
/// own device check first and touches nothing of GPU Faiss unless a GPU answers (1.7.3's
/// getNumDevices() aborts without a driver). Throws recforge::Error for `cuda` when impossible.
int choose_gpu(IndexDevice device, Type type, int64_t pq_m, int64_t pq_nbits) {
  if (device == IndexDevice::kCpu) return -1;
  const std::string why = gpu_unsupported(type, pq_m, pq_nbits);
  if (device == IndexDevice::kCuda) {
    if (!faiss_gpu_compiled())
      fail(
          "index.device cuda: this recforge was built without GPU Faiss; run "
          "tools/faiss-gpu/build-faiss-gpu.sh and configure with -DRECFORGE_FAISS_GPU=ON "
          "(docs/export.md), or set index.device to auto or cpu");
    if (!why.empty())
      fail(
          "index.device cuda: {}; set index.device to auto or cpu to keep this {} index on the CPU",
          why, type_name(type));
    if (backend::cuda_device_count() < 1)
      fail(
          "index.device cuda: no CUDA device answers on this machine; set index.device to auto "
          "or cpu");
    return 0;
  }
  if (!faiss_gpu_compiled() || backend::cuda_device_count() < 1) return -1;
  if (!why.empty()) {
    if (type == Type::kHnsw)
      log().debug("index: {}; the hnsw index stays on the CPU", why);
    else
      log().info("index: {}; the {} index stays on the CPU", why, type_name(type));
    return -1;
  }
  return 0;
}

/// The IVF part of an index, or nullptr.
faiss::IndexIVF* as_ivf(faiss::Index* i) { return dynamic_cast<faiss::IndexIVF*>(i); }
/// The HNSW part of an index, or nullptr.
faiss::IndexHNSW* as_hnsw(faiss::Index* i) { return dynamic_cast<faiss::IndexHNSW*>(i); }

/// `n_train` distinct rows of `x` (n × d) chosen by a seeded partial Fisher-Yates shuffle, in
/// increasing row order; all rows when n_train >= n.
std::vector<float> sample_rows(const std::vector<float>& x, int64_t n, int d, int64_t n_train,
                               uint64_t seed) {
  if (n_train >= n) return x;
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  Rng rng(derive_seed(seed, 0x1d3e));
  for (int64_t i = 0; i < n_train; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - i)));
    std::swap(rows[static_cast<size_t>(i)], rows[static_cast<size_t>(j)]);
  }
  rows.resize(static_cast<size_t>(n_train));
  std::sort(rows.begin(), rows.end());
  std::vector<float> out(static_cast<size_t>(n_train) * d);
  for (int64_t i = 0; i < n_train; ++i)
    std::copy_n(x.data() + rows[static_cast<size_t>(i)] * d, d, out.data() + i * d);
  return out;
}

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::kFlat:
      return "flat";
    case Type::kIvfFlat:
      return "ivf_flat";
    case Type::kIvfPq:
      return "ivf_pq";
    case Type::kHnsw:
      return "hnsw";
  }
  return "?";
}

Type parse_type(const std::string& name, const std::string& what) {
  for (Type t : {Type::kFlat, Type::kIvfFlat, Type::kIvfPq, Type::kHnsw})
    if (name == type_name(t)) return t;
  fail("{}: index type \"{}\" is unknown; expected flat, ivf_flat, ivf_pq or hnsw", what, name);
}

const char* metric_name(Metric m) { return m == Metric::kCosine ? "cosine" : "inner_product"; }

Metric parse_metric(const std::string& name, const std::string& what) {
  if (name == "inner_product") return Metric::kInnerProduct;
  if (name == "cosine") return Metric::kCosine;
  fail("{}: metric \"{}\" is unknown; expected inner_product or cosine", what, name);
}

const char* device_name(IndexDevice d) {
  switch (d) {
    case IndexDevice::kAuto:
      return "auto";
    case IndexDevice::kCpu:
      return "cpu";
    case IndexDevice::kCuda:
      return "cuda";
  }
  return "?";
}

IndexDevice parse_index_device(const std::string& name, const std::string& what) {
  for (IndexDevice d : {IndexDevice::kAuto, IndexDevice::kCpu, IndexDevice::kCuda})
    if (name == device_name(d)) return d;
  fail("{}: device \"{}\" is unknown; expected auto, cpu or cuda", what, name);
}

int64_t resolve_pq_m(int64_t d) {
  for (int64_t m = d / 4; m > 1; --m)
    if (d % m == 0) return m;
  return 1;
}

void check_dimension(const Options& o, int64_t d) {
  const int64_t m = o.pq_m > 0 ? o.pq_m : resolve_pq_m(d);
  if (o.type == Type::kIvfPq && d % m != 0)
    fail("index.pq_m {}: expected a divisor of the factor dimension {} (or 0 to choose one)", m, d);
  if (o.device == IndexDevice::kCuda) choose_gpu(o.device, o.type, m, o.pq_nbits);
}

int64_t resolve_nlist(const Options& o, int64_t n_items) {
  if (o.nlist > 0) return o.nlist;
  const int64_t n_train = std::min(n_items, o.train_sample);
  const int64_t by_size = std::llround(4 * std::sqrt(static_cast<double>(n_items)));
  return std::clamp<int64_t>(std::min(by_size, n_train / 39), 1, std::max<int64_t>(n_train, 1));
}

void check_item_count(const Options& o, int64_t n_items) {
  if (o.type != Type::kIvfFlat && o.type != Type::kIvfPq) return;
  const int64_t n_train = std::min(n_items, o.train_sample);
  const int64_t nlist = resolve_nlist(o, n_items);
  if (nlist > n_train)
    fail(
        "index.nlist {}: expected at most the number of training vectors, {} (the items, or "
        "index.train_sample when smaller)",
        nlist, n_train);
  if (o.type == Type::kIvfPq && (int64_t{1} << o.pq_nbits) > n_train)
    fail(
        "index.pq_nbits {}: the product quantizer needs at least 2^{} = {} training vectors, "
        "there are {}; expected a smaller index.pq_nbits",
        o.pq_nbits, o.pq_nbits, int64_t{1} << o.pq_nbits, n_train);
}

void normalize_rows(float* x, int64_t n, int d) {
  for (int64_t r = 0; r < n; ++r) {
    float* row = x + r * d;
    double s = 0;
    for (int j = 0; j < d; ++j) s += static_cast<double>(row[j]) * row[j];
    if (s <= 0) continue;
    const float inv = static_cast<float>(1.0 / std::sqrt(s));
    for (int j = 0; j < d; ++j) row[j] *= inv;
  }
}

ItemIndex::ItemIndex() = default;
ItemIndex::~ItemIndex() = default;
ItemIndex::ItemIndex(ItemIndex&&) noexcept = default;
ItemIndex& ItemIndex::operator=(ItemIndex&&) noexcept = default;

ItemIndex ItemIndex::build(const Matrix& items, const Options& o) {
  const int64_t n = items.rows;
  const int d = static_cast<int>(items.cols);
  if (n < 1 || d < 1)
    fail(
        "index: the item factors have shape ({}, {}); expected at least one item and one "
        "dimension",
        n, d);
  // Where it will be searched, decided (and a `cuda` that cannot be honoured refused) first.
  const int gpu = choose_gpu(o.device, o.type, o.pq_m > 0 ? o.pq_m : resolve_pq_m(d), o.pq_nbits);
  // Faiss reports no progress; at least say what is running (an HNSW graph over 1.3M items took
  // 18 minutes on 2 cores).
  if (o.type != Type::kFlat)
    log().info("index: building the {} index of {} items ({} dimensions) on the {}",
               type_name(o.type), n, d, gpu >= 0 ? "GPU" : "CPU");
  std::vector<float> x = items.data.to_vector();
  if (o.metric == Metric::kCosine) normalize_rows(x.data(), n, d);
  ItemIndex out;
  out.type_ = o.type;
  out.metric_ = o.metric;
  out.build_info_ = {{"seed", o.seed}};
  try {
    if (o.type == Type::kFlat) {
      out.index_ = std::make_unique<faiss::IndexFlatIP>(d);
    } else if (o.type == Type::kHnsw) {
      auto h = std::make_unique<faiss::IndexHNSWFlat>(d, static_cast<int>(o.hnsw_m),
                                                      faiss::METRIC_INNER_PRODUCT);
      h->hnsw.efConstruction = static_cast<int>(o.ef_construction);
      h->hnsw.efSearch = static_cast<int>(o.ef_search);
      h->hnsw.rng = faiss::RandomGenerator(static_cast<int64_t>(o.seed & 0x7fffffffffffffffULL));
      out.index_ = std::move(h);
    } else {
      const int64_t n_train = std::min(n, o.train_sample);
      const int64_t nlist = resolve_nlist(o, n);
      check_dimension(o, d);
      check_item_count(o, n);
      auto* quantizer = new faiss::IndexFlatIP(d);
      std::unique_ptr<faiss::IndexIVF> ivf;
      if (o.type == Type::kIvfFlat) {
        ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, d, static_cast<size_t>(nlist),
                                                    faiss::METRIC_INNER_PRODUCT);
      } else {
        const int64_t m = o.pq_m > 0 ? o.pq_m : resolve_pq_m(d);
        auto pq = std::make_unique<faiss::IndexIVFPQ>(
            quantizer, d, static_cast<size_t>(nlist), static_cast<size_t>(m),
            static_cast<size_t>(o.pq_nbits), faiss::METRIC_INNER_PRODUCT);
        pq->pq.cp.seed = static_cast<int>(derive_seed(o.seed, 2) & 0x7fffffff);
        pq->pq.cp.min_points_per_centroid = 1;  // we warn ourselves, below
        ivf = std::move(pq);
      }
      ivf->own_fields = true;
      ivf->cp.seed = static_cast<int>(derive_seed(o.seed, 1) & 0x7fffffff);
      ivf->cp.min_points_per_centroid = 1;
      if (n_train < 39 * nlist)
        log().warn(
            "index: {} training vectors for {} IVF cells; Faiss suggests at least 39 per "
            "cell (lower index.nlist or raise index.train_sample)",
            n_train, nlist);
      const std::vector<float> sample = sample_rows(x, n, d, n_train, o.seed);
      ivf->train(n_train, sample.data());
      ivf->nprobe = static_cast<size_t>(std::min(o.nprobe, nlist));
      out.build_info_["train_vectors"] = n_train;
      out.index_ = std::move(ivf);
    }
    if (gpu >= 0) {
      // Trained on the CPU above (seeded, as in a CPU build; 1.7.3 would train the PQ codebooks
      // with L2 k-means on the GPU over 4-16-dimensional sub-vectors). The vectors are added on
      // the GPU, and the CPU copy taken from there is what write() exports and what searches
      // beyond the GPU's k / nprobe limit use.
      out.gpu_ = detail::copy_to_gpu(*out.index_, gpu, n);
      out.gpu_->add(n, x.data());
      std::unique_ptr<faiss::Index> cpu = out.gpu_->to_cpu();
      if (auto* ivf = as_ivf(cpu.get())) ivf->nprobe = as_ivf(out.index_.get())->nprobe;
      out.index_ = std::move(cpu);
    } else {
      out.index_->add(n, x.data());
    }
  } catch (const faiss::FaissException& e) {
    fail("index: Faiss could not build the {} index over ({}, {}) item factors: {}",
         type_name(o.type), n, d, e.what());
  }
  out.note_cells();
  return out;
}

namespace {

/// The IVF index's cells as a flat matrix of centroids (what ItemIndex::search ranks exactly),
/// or nullptr for other indices and quantizers.
const faiss::IndexFlat* ivf_cells(const faiss::Index* i) {
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(i);
  const auto* cells = ivf ? dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer) : nullptr;
  return cells && cells->ntotal == static_cast<faiss::Index::idx_t>(ivf->nlist) ? cells : nullptr;
}

}  // namespace

void ItemIndex::note_cells() {
  const faiss::IndexFlat* cells = ivf_cells(index_.get());
  cell_norm_ = cells ? eval::max_row_norm(cells->get_xb(), cells->ntotal,
                                          static_cast<int>(cells->d))
                     : -1;
}

namespace {

/// A Faiss index file in memory that could not be read; `why` says what is wrong.
struct Malformed {
  std::string why;
};

/// The four-character code that Faiss writes before each index ("IxFI" and so on).
constexpr uint32_t fourcc(const char (&s)[5]) {
  return static_cast<uint32_t>(static_cast<unsigned char>(s[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}

/// The top-level code of each index type recforge writes.
uint32_t fourcc_of(Type t) {
  switch (t) {
    case Type::kFlat:
      return fourcc("IxFI");
    case Type::kIvfFlat:
      return fourcc("IwFl");
    case Type::kIvfPq:
      return fourcc("IwPQ");
    case Type::kHnsw:
      return fourcc("IHNf");
  }
  return 0;
}

/// Walks a Faiss 1.7.3 index file in memory exactly as faiss::read_index will read it, for the
/// index kinds recforge writes, and throws Malformed unless read_index can read it through.
///
/// Why: every branch of read_index (faiss/impl/index_read.cpp in 1.7.3) creates its index with
/// a plain `new` and then reads into it with macros that throw on a short read or an
/// inconsistent size (READANDCHECK, READVECTOR, FAISS_THROW_IF_NOT); nothing frees the index
/// being read, so each rejected file leaks all it had allocated, vectors sized from the file
/// included (READXBVECTOR resizes the codes of a flat index to the length the file claims
/// before reading them). Faiss is only ever given a file that has passed this walk. The walk
/// also checks what read_index does not and a search relies on: shapes that agree with each
/// other, and labels and neighbours that are rows of the index.
class FaissScan {
 public:
  explicit FaissScan(std::string_view bytes) : b_(bytes) {}

  /// The shape of one index read.
  struct Info {
    uint32_t kind = 0;
    int64_t d = 0;
    int64_t ntotal = 0;
  };

  /// Scans the whole file, whose top-level index must be of type `type` (`kind_ok` false when
  /// it is another kind recforge writes).
  Info scan(Type type, bool* kind_ok) {
    const uint32_t kind = peek_u32("the index kind");
    *kind_ok = true;
    if (kind != fourcc_of(type)) {
      for (Type t : {Type::kFlat, Type::kIvfFlat, Type::kIvfPq, Type::kHnsw})
        if (kind == fourcc_of(t)) {
          *kind_ok = false;
          return {};
        }
    }
    const Info info = index(0);
    if (pos_ != b_.size())
      throw Malformed{fmt::format("{} bytes after the end of the index", b_.size() - pos_)};
    return info;
  }

 private:
  template <typename T>
  T get(const char* what) {
    if (b_.size() - pos_ < sizeof(T))
      throw Malformed{fmt::format("the file ends in {} at byte {}", what, pos_)};
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  uint32_t peek_u32(const char* what) {
    const uint32_t v = get<uint32_t>(what);
    pos_ -= sizeof(uint32_t);
    return v;
  }

  /// A vector (size_t count, then count elements of `elem` bytes): returns the count and where
  /// the elements start, and skips them.
  std::pair<uint64_t, size_t> vec(size_t elem, const char* what) {
    const uint64_t n = get<uint64_t>(what);
    if (n >= (uint64_t{1} << 40) || n > (b_.size() - pos_) / elem)
      throw Malformed{fmt::format("{} claims {} elements, more than the file holds", what, n)};
    const size_t at = pos_;
    pos_ += static_cast<size_t>(n) * elem;
    return {n, at};
  }

  template <typename T>
  T element(size_t at, uint64_t i) const {
    T v;
    std::memcpy(&v, b_.data() + at + i * sizeof(T), sizeof(T));
    return v;
  }

  /// read_index_header: d, ntotal, two dummies, is_trained, metric (and its argument).
  Info header(uint32_t kind) {
    Info h;
    h.kind = kind;
    h.d = get<int32_t>("the index header");
    h.ntotal = get<int64_t>("the index header");
    get<int64_t>("the index header");
    get<int64_t>("the index header");
    get<uint8_t>("the index header");
    const int32_t metric = get<int32_t>("the index header");
    if (metric > 1) get<float>("the index header");
    if (h.d < 1 || h.ntotal < 0)
      throw Malformed{fmt::format("dimension {} and {} vectors in an index header", h.d, h.ntotal)};
    return h;
  }

  Info index(int depth) {
    if (depth > 1) throw Malformed{"indices nested deeper than recforge writes them"};
    const uint32_t kind = get<uint32_t>("the index kind");
    if (kind == fourcc("IxFI")) {
      const Info h = header(kind);
      const uint64_t n = vec(sizeof(float), "the flat index's vectors").first;
      if (n != static_cast<uint64_t>(h.ntotal) * static_cast<uint64_t>(h.d))
        throw Malformed{fmt::format("a flat index of {} vectors of dimension {} holds {} floats",
                                    h.ntotal, h.d, n)};
      return h;
    }
    if (kind == fourcc("IwFl") || kind == fourcc("IwPQ")) {
      const Info h = header(kind);
      const uint64_t nlist = get<uint64_t>("the IVF header");
      get<uint64_t>("the IVF header");  // nprobe
      const Info q = index(depth + 1);
      if (q.kind != fourcc("IxFI") || q.d != h.d || static_cast<uint64_t>(q.ntotal) != nlist)
        throw Malformed{fmt::format(
            "the IVF index of {} cells in dimension {} has a quantizer of {} vectors of "
            "dimension {}",
            nlist, h.d, q.ntotal, q.d)};
      const uint8_t map_type = get<uint8_t>("the direct map");
      if (map_type > 2) throw Malformed{fmt::format("direct map type {}", map_type)};
      vec(sizeof(int64_t), "the direct map");
      if (map_type == 2) vec(2 * sizeof(int64_t), "the direct map");
      uint64_t code_size = static_cast<uint64_t>(h.d) * sizeof(float);
      if (kind == fourcc("IwPQ")) {
        get<uint8_t>("the IVF-PQ header");  // by_residual
        code_size = get<uint64_t>("the IVF-PQ header");
        const uint64_t pq_d = get<uint64_t>("the product quantizer");
        const uint64_t m = get<uint64_t>("the product quantizer");
        const uint64_t nbits = get<uint64_t>("the product quantizer");
        if (pq_d != static_cast<uint64_t>(h.d) || m < 1 || pq_d % m != 0 || nbits < 1 ||
            nbits > 16 || code_size != (nbits * m + 7) / 8)
          throw Malformed{fmt::format(
              "a product quantizer of dimension {}, {} sub-quantizers of {} bits and {}-byte "
              "codes in an index of dimension {}",
              pq_d, m, nbits, code_size, h.d)};
        if (vec(sizeof(float), "the product quantizer's centroids").first != pq_d << nbits)
          throw Malformed{"the product quantizer's centroids do not match its shape"};
      }
      inverted_lists(nlist, code_size, h.ntotal);
      return h;
    }
    if (kind == fourcc("IHNf")) {
      const Info h = header(kind);
      const uint64_t n = static_cast<uint64_t>(h.ntotal);
      vec(sizeof(double), "the HNSW level probabilities");
      vec(sizeof(int32_t), "the HNSW neighbours per level");
      if (vec(sizeof(int32_t), "the HNSW levels").first != n)
        throw Malformed{"the HNSW levels do not cover the vectors"};
      const auto [n_off, off] = vec(sizeof(uint64_t), "the HNSW offsets");
      if (n_off != n + 1) throw Malformed{"the HNSW offsets do not cover the vectors"};
      const auto [n_nb, nb] = vec(sizeof(int32_t), "the HNSW neighbours");
      uint64_t prev = 0;
      for (uint64_t i = 0; i <= n; ++i) {
        const uint64_t o = element<uint64_t>(off, i);
        if (o < prev || (i == 0 && o != 0)) throw Malformed{"the HNSW offsets decrease"};
        prev = o;
      }
      if (prev != n_nb) throw Malformed{"the HNSW offsets do not end at the neighbour count"};
      for (uint64_t i = 0; i < n_nb; ++i) {
        const int32_t v = element<int32_t>(nb, i);
        if (v < -1 || v >= h.ntotal)
          throw Malformed{fmt::format("an HNSW neighbour is {}, not a vector of the index", v)};
      }
      const int32_t entry = get<int32_t>("the HNSW parameters");
      if (entry < -1 || entry >= h.ntotal || (entry < 0 && h.ntotal > 0))
        throw Malformed{fmt::format("the HNSW entry point is {}", entry)};
      for (int k = 0; k < 4; ++k) get<int32_t>("the HNSW parameters");
      const Info storage = index(depth + 1);
      if (storage.kind != fourcc("IxFI") || storage.d != h.d || storage.ntotal != h.ntotal)
        throw Malformed{"the HNSW storage does not hold the index's vectors"};
      return h;
    }
    throw Malformed{fmt::format("index kind 0x{:08x} at byte {} is not one recforge writes", kind,
                                pos_ - 4)};
  }

  /// write_InvertedLists of ArrayInvertedLists ("ilar"): list sizes ("full" or "sprs"), then
  /// each non-empty list's codes and ids.
  void inverted_lists(uint64_t nlist, uint64_t code_size, int64_t ntotal) {
    if (get<uint32_t>("the inverted lists") != fourcc("ilar"))
      throw Malformed{"the inverted lists are not stored in the index"};
    if (get<uint64_t>("the inverted lists") != nlist ||
        get<uint64_t>("the inverted lists") != code_size)
      throw Malformed{"the inverted lists do not match the IVF header"};
    std::vector<uint64_t> sizes(static_cast<size_t>(nlist), 0);
    const uint32_t list_type = get<uint32_t>("the inverted lists");
    if (list_type == fourcc("full")) {
      const auto [n, at] = vec(sizeof(uint64_t), "the inverted list sizes");
      if (n != nlist) throw Malformed{"the inverted list sizes do not cover the cells"};
      for (uint64_t i = 0; i < n; ++i) sizes[i] = element<uint64_t>(at, i);
    } else if (list_type == fourcc("sprs")) {
      const auto [n, at] = vec(sizeof(uint64_t), "the inverted list sizes");
      if (n % 2 != 0) throw Malformed{"the sparse inverted list sizes are not pairs"};
      for (uint64_t j = 0; j < n; j += 2) {
        const uint64_t list = element<uint64_t>(at, j);
        if (list >= nlist) throw Malformed{fmt::format("inverted list {} of {}", list, nlist)};
        sizes[list] = element<uint64_t>(at, j + 1);
      }
    } else {
      throw Malformed{"the inverted list sizes are of an unknown kind"};
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < nlist; ++i) {
      const uint64_t n = sizes[i];
      if (n == 0) continue;
      if (n > (b_.size() - pos_) / (code_size + sizeof(int64_t)))
        throw Malformed{fmt::format("inverted list {} claims {} entries, more than the file holds",
                                    i, n)};
      pos_ += n * code_size;
      const size_t ids = pos_;
      pos_ += n * sizeof(int64_t);
      for (uint64_t e = 0; e < n; ++e) {
        const int64_t id = element<int64_t>(ids, e);
        if (id < 0 || id >= ntotal)
          throw Malformed{fmt::format("inverted list {} holds label {}, not a row of the {} items",
                                      i, id, ntotal)};
      }
      total += n;
    }
    if (total != static_cast<uint64_t>(ntotal))
      throw Malformed{fmt::format("the inverted lists hold {} entries, the index {}", total,
                                  ntotal)};
  }

  std::string_view b_;
  size_t pos_ = 0;
};

/// faiss::IOReader over bytes in memory.
struct ViewReader : faiss::IOReader {
  std::string_view bytes;
  size_t pos = 0;
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0 || nitems == 0) return 0;
    const size_t n = std::min(nitems, (bytes.size() - pos) / size);
    if (n > 0) std::memcpy(ptr, bytes.data() + pos, n * size);
    pos += n * size;
    return n;
  }
};

}  // namespace

ItemIndex ItemIndex::read(const std::string& path, Type type, Metric metric) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return from_bytes(bytes, path, type, metric);
}

ItemIndex ItemIndex::from_bytes(std::string_view bytes, const std::string& path, Type type,
                                Metric metric) {
  ItemIndex out;
  out.type_ = type;
  out.metric_ = metric;
  bool kind_ok = true;
  try {
    FaissScan(bytes).scan(type, &kind_ok);
  } catch (const Malformed& e) {
    fail("{}: not a readable Faiss index ({})", path, e.why);
  }
  if (!kind_ok)
    fail("{}: the Faiss index is not of type {} as the manifest says", path, type_name(type));
  try {
    ViewReader reader;
    reader.bytes = bytes;
    reader.name = path;
    out.index_.reset(faiss::read_index(&reader));
  } catch (const faiss::FaissException& e) {
    std::string what = e.what();
    if (const auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    fail("{}: not a readable Faiss index ({})", path, what);
  }
  faiss::Index* i = out.index_.get();
  kind_ok = false;
  switch (type) {
    case Type::kFlat:
      kind_ok = dynamic_cast<faiss::IndexFlat*>(i) != nullptr;
      break;
    case Type::kIvfFlat:
      kind_ok = dynamic_cast<faiss::IndexIVFFlat*>(i) != nullptr;
      break;
    case Type::kIvfPq:
      kind_ok = dynamic_cast<faiss::IndexIVFPQ*>(i) != nullptr;
      break;
    case Type::kHnsw:
      kind_ok = dynamic_cast<faiss::IndexHNSWFlat*>(i) != nullptr;
      break;
  }
  if (!kind_ok)
    fail("{}: the Faiss index is not of type {} as the manifest says", path, type_name(type));
  if (i->metric_type != faiss::METRIC_INNER_PRODUCT)
    fail("{}: the Faiss index does not use the inner-product metric", path);
  out.note_cells();
  return out;
}

void ItemIndex::write(const std::string& path) const {
  RF_ASSERT(index_ != nullptr, "ItemIndex::write: no index");
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  std::error_code ec;
  try {
    faiss::write_index(index_.get(), tmp.c_str());
  } catch (const faiss::FaissException& e) {
    std::filesystem::remove(tmp, ec);
    fail("{}: cannot write the Faiss index (disk full or no permission?)", path);
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail("{}: cannot move the finished index into place: {}", path, ec.message());
  }
}

void ItemIndex::search(const float* queries, int64_t n, int k, float* scores,
                       int64_t* labels) const {
  RF_ASSERT(index_ != nullptr, "ItemIndex::search: no index");
  RF_ASSERT(k >= 1, "ItemIndex::search: k must be >= 1");
  if (n == 0) return;
  const int d = dim();
  const float* x = queries;
  std::vector<float> normalized;
  if (metric_ == Metric::kCosine) {
    normalized.assign(queries, queries + n * d);
    normalize_rows(normalized.data(), n, d);
    x = normalized.data();
  }
  if (gpu_) {
    const faiss::IndexIVF* ivf = as_ivf(index_.get());
    const int64_t nprobe =
        ivf ? static_cast<int64_t>(std::min(ivf->nprobe, std::max<size_t>(ivf->nlist, 1))) : 1;
    if (k <= kGpuMaxSelect && nprobe <= kGpuMaxSelect) {
      gpu_->search(x, n, k, nprobe, scores, labels);
      return;
    }
    if (!gpu_->fallback_logged.exchange(true))
      log().info(
          "index: searches for k = {}{} exceed GPU Faiss 1.7.3's limit of {}; they run on the "
          "CPU copy of the index",
          k, ivf ? fmt::format(" with nprobe {}", nprobe) : std::string(), kGpuMaxSelect);
  }
  try {
    const faiss::IndexFlat* cells = ivf_cells(index_.get());
    if (const faiss::IndexHNSW* h = as_hnsw(index_.get())) {
      // Faiss sizes its result heap by max(efSearch, k) but stops exploring after efSearch
      // steps: a query for more than ef_search results explores k candidates instead, as
      // index.ef_search promises (a small ef_search gave far lower recall for a large fetch).
      faiss::SearchParametersHNSW params;
      params.efSearch = std::max(h->hnsw.efSearch, k);
      params.check_relative_distance = h->hnsw.check_relative_distance;
      index_->search(n, x, k, scores, labels, &params);
      return;
    }
    if (cells == nullptr) {
      index_->search(n, x, k, scores, labels);
      return;
    }
    const faiss::IndexIVF* ivf = as_ivf(index_.get());
    // IVF: the cells a query probes are the top nprobe of its exact centroid scores
    // (eval::topk: the GEMM only picks candidates, the ranking and scores are summed in double
    // in a fixed order), not of Faiss's quantizer search, which scores a slice of 20 queries or
    // more with a GEMM and smaller ones one query at a time: at a near-tie between two cells the
    // two summations disagree, and a user's list changed with the batch it was served in. The
    // lists are then scanned per query, as Faiss's own search does.
    const int64_t nprobe = std::clamp<int64_t>(static_cast<int64_t>(ivf->nprobe), 1,
                                               static_cast<int64_t>(ivf->nlist));
    const eval::TopK probe = eval::topk(x, n, cells->get_xb(), cells->ntotal, d,
                                        static_cast<int>(nprobe), nullptr, {}, nullptr,
                                        cell_norm_);
    const std::vector<faiss::Index::idx_t> assign(probe.items.begin(), probe.items.end());
    faiss::SearchParametersIVF params;  // the nprobe of `assign`'s rows, whatever the index holds
    params.nprobe = static_cast<size_t>(nprobe);
    params.max_codes = ivf->max_codes;
    // One slice of the queries per thread, as IndexIVF::search does (search_preassigned itself
    // runs on one thread in Faiss's default parallel mode).
    const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n));
    std::string error;
#pragma omp parallel for num_threads(static_cast<int>(slices)) schedule(static, 1)
    for (int64_t t = 0; t < slices; ++t) {
      const int64_t i0 = n * t / slices, i1 = n * (t + 1) / slices;
      try {
        ivf->search_preassigned(i1 - i0, x + i0 * d, k, assign.data() + i0 * nprobe,
                                probe.scores.data() + i0 * nprobe, scores + i0 * k,
                                labels + i0 * k, false, &params);
      } catch (const std::exception& e) {
#pragma omp critical(recforge_ivf_search)
        if (error.empty()) error = e.what();
      }
    }
    if (!error.empty())
      throw InternalError(fmt::format("Faiss search failed: {}", error), __FILE__, __LINE__);
  } catch (const faiss::FaissException& e) {
    throw InternalError(fmt::format("Faiss search failed: {}", e.what()), __FILE__, __LINE__);
  }
}

void ItemIndex::place(IndexDevice device) {
  RF_ASSERT(index_ != nullptr, "ItemIndex::place: no index");
  int64_t m = 0, nbits = 8;
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(index_.get())) {
    m = static_cast<int64_t>(pq->pq.M);
    nbits = static_cast<int64_t>(pq->pq.nbits);
  }
  const int gpu = choose_gpu(device, type_, m, nbits);
  if (gpu < 0) {
    gpu_.reset();
    return;
  }
  if (gpu_ && gpu_->ordinal() == gpu) return;
  gpu_.reset();
  gpu_ = detail::copy_to_gpu(*index_, gpu, 0);
}

std::string ItemIndex::device() const {
  return gpu_ ? fmt::format("cuda:{}", gpu_->ordinal()) : std::string("cpu");
}

void ItemIndex::set_nprobe(int64_t nprobe) {
  if (auto* ivf = as_ivf(index_.get()))
    ivf->nprobe = static_cast<size_t>(std::clamp<int64_t>(nprobe, 1, ivf->nlist));
}

void ItemIndex::set_ef_search(int64_t ef) {
  if (auto* h = as_hnsw(index_.get()))
    h->hnsw.efSearch = static_cast<int>(std::max<int64_t>(ef, 1));
}

int64_t ItemIndex::size() const { return index_ ? index_->ntotal : 0; }

int ItemIndex::dim() const { return index_ ? static_cast<int>(index_->d) : 0; }

nlohmann::json ItemIndex::describe() const {
  nlohmann::json j = build_info_;
  j["type"] = type_name(type_);
  j["metric"] = metric_name(metric_);
  j["normalized"] = metric_ == Metric::kCosine;
  j["faiss_metric"] = "inner_product";
  j["device"] = device();
  j["faiss_version"] =
      fmt::format("{}.{}.{}", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR, FAISS_VERSION_PATCH);
  j["ntotal"] = size();
  j["dim"] = dim();
  if (auto* ivf = as_ivf(index_.get())) {
    j["nlist"] = ivf->nlist;
    j["nprobe"] = ivf->nprobe;
    if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(ivf)) {
      j["pq_m"] = pq->pq.M;
      j["pq_nbits"] = pq->pq.nbits;
    }
  }
  if (auto* h = as_hnsw(index_.get())) {
    j["hnsw_m"] = h->hnsw.nb_neighbors(1);
    j["ef_construction"] = h->hnsw.efConstruction;
    j["ef_search"] = h->hnsw.efSearch;
  }
  return j;
}

}  // namespace recforge::index
