// `cachalot bench ep`: dispatch/combine over the shm transport with DeepSeek-V3's shapes (hidden
// 7168, top-8 of 256 experts), ranks as processes. Per rank: payload GB/s and latency of
// normal-mode dispatch (FP8 or BF16; in place, and into owned tensors) and combine (BF16), and of
// a low-latency round trip.
// Peers measured in the same run: every rank memcpy'ing the same number of bytes at the same
// time (the copy a transfer cannot beat), and MPI_Alltoallv of the same per-destination byte
// counts (mpirun started as a child: `cachalot bench ep --mpi-peer` is that child's job).
//
// Times are per operation: each iteration starts after a barrier and lasts from the first rank's
// start to the last rank's end (the step waits for every rank; makespan_per_iteration), and
// the median over iterations is reported. Ours and the peers are timed alike.
#include <mpi.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_models.h"
#include "bench/benches.h"
#include "core/error.h"
#include "core/log.h"
#include "ep/buffer.h"
#include "ep/launch.h"

namespace cachalot::bench {
namespace {

constexpr int64_t kHidden = 7168, kExperts = 256, kTopK = 8;

struct EpCase {
  int world;
  int64_t tokens;
  bool fp8;
  std::string name() const {
    return fmt::format("{} ranks tokens={} {}", world, tokens, fp8 ? "fp8" : "bf16");
  }
};

std::vector<EpCase> normal_cases(bool quick) {
  if (quick) return {{4, 128, true}};
  std::vector<EpCase> cases;
  // 2 ranks: a core per rank on a 2-core machine; 4 and 8 share the cores (ours and the memcpy
  // peer alike: both are timed from the first rank's start to the last rank's end).
  for (const int world : {2, 4, 8})
    for (const int64_t tokens : {128, 512, 4096})
      for (const bool fp8 : {true, false})
        if (fp8 || tokens <= 2048 || world <= 4) cases.push_back({world, tokens, fp8});
  return cases;
}

// Uniformly random distinct experts per token (what EPLB aims to make the load look like).
Tensor make_topk(int rank, int64_t tokens) {
  std::mt19937_64 rng(1000 + static_cast<uint64_t>(rank));
  Tensor topk = Tensor::empty(DType::kI32, {tokens, kTopK});
  for (int64_t t = 0; t < tokens; ++t) {
    int32_t* row = topk.mutable_data<int32_t>() + t * kTopK;
    for (int64_t j = 0; j < kTopK;) {
      const int32_t e = static_cast<int32_t>(rng() % kExperts);
      if (std::find(row, row + j, e) == row + j) row[j++] = e;
    }
  }
  return topk;
}

size_t row_bytes(bool fp8) { return fp8 ? kHidden + (kHidden / 128) * 4 : kHidden * 2; }

// Bytes `rank` sends to each destination in normal dispatch.
std::vector<size_t> dispatch_bytes(int rank, int world, int64_t tokens, bool fp8) {
  const Tensor topk = make_topk(rank, tokens);
  std::vector<size_t> bytes(static_cast<size_t>(world), 0);
  const int64_t per = kExperts / world;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<bool> in(static_cast<size_t>(world), false);
    for (int64_t j = 0; j < kTopK; ++j) in[topk.data<int32_t>()[t * kTopK + j] / per] = true;
    for (int d = 0; d < world; ++d) bytes[d] += in[d] ? row_bytes(fp8) : 0;
  }
  return bytes;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// When an operation ran on one rank, in seconds of the host's monotonic clock (which every
// process on the host shares).
struct Interval {
  double start, end;
};
template <typename Fn> Interval timed(Fn&& fn) {
  const auto clock = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  const double start = clock();
  fn();
  return {start, clock()};
}

// Per iteration, the step's time from the first rank's start to the last rank's end, gathered on
// every rank. Not the slowest rank's own time: with ranks outnumbering cores a rank may wait
// for a core after the barrier, and its own timer would not count that wait (a memcpy peer
// timed so looked twice as fast at 4 ranks as all ranks copying at once can be).
std::vector<double> makespan_per_iteration(ep::Transport& t, const std::vector<Interval>& mine) {
  std::vector<Interval> all(mine.size() * static_cast<size_t>(t.world_size()));
  t.all_gather(std::as_bytes(std::span(mine)), std::as_writable_bytes(std::span(all)));
  std::vector<double> makespan(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    double first = all[i].start, last = all[i].end;
    for (size_t r = 1; r < static_cast<size_t>(t.world_size()); ++r) {
      first = std::min(first, all[r * mine.size() + i].start);
      last = std::max(last, all[r * mine.size() + i].end);
    }
    makespan[i] = last - first;
  }
  return makespan;
}

// What one shm case measures (rank 0's view), sent back to the parent through a pipe.
struct Figures {
  double dispatch_s, combine_s, memcpy_dispatch_s, memcpy_combine_s;
  double dispatch_bytes, combine_bytes;  // per rank, mean
  double owned_dispatch_s;               // dispatch into owned tensors (a second copy)
  bool zero_copy = false;                // low latency: the combine went zero-copy
};

Figures measure_normal(ep::Transport& t, const EpCase& c, int iterations) {
  ep::Buffer buffer(t);
  std::mt19937 rng(7 + static_cast<unsigned>(t.rank()));
  Tensor x = Tensor::empty(c.fp8 ? DType::kF8E4M3 : DType::kBF16, {c.tokens, kHidden});
  for (size_t i = 0; i < x.nbytes(); ++i) static_cast<uint8_t*>(x.mutable_raw_data())[i] = static_cast<uint8_t>(rng() & 0x77);
  Tensor scales = c.fp8 ? Tensor::zeros(DType::kF32, {c.tokens, kHidden / 128}) : Tensor();
  const Tensor topk = make_topk(t.rank(), c.tokens);
  const Tensor weights = Tensor::zeros(DType::kF32, {c.tokens, kTopK});
  const ep::DispatchLayout layout = buffer.get_dispatch_layout(topk, kExperts);

  std::vector<Interval> dispatch_s, combine_s, copy_d, copy_c, owned_s;
  double sent = 0, returned = 0;
  for (int i = 0; i <= iterations; ++i) {  // iteration 0 warms pages and caches up
    t.barrier();
    const Interval owned = timed([&] { buffer.dispatch(x, scales, topk, weights, layout); });
    t.barrier();
    ep::DispatchResult r;
    const Interval d = timed([&] { r = buffer.dispatch(x, scales, topk, weights, layout, {.in_place = true}); });
    const Tensor out = Tensor::zeros(DType::kBF16, {r.x.size(0), kHidden});
    t.barrier();
    const Interval cb = timed([&] { buffer.combine(out, r.handle); });
    if (i == 0) {
      for (int dst = 0; dst < t.world_size(); ++dst) sent += layout.tokens_per_rank[dst] * static_cast<double>(row_bytes(c.fp8));
      returned = static_cast<double>(out.nbytes());
      continue;
    }
    dispatch_s.push_back(d);
    combine_s.push_back(cb);
    owned_s.push_back(owned);
  }
  // The peer: the same bytes memcpy'd by every rank at once.
  std::vector<std::byte> src(static_cast<size_t>(std::max(sent, returned))), dst(src.size());
  std::memset(src.data(), 1, src.size());
  std::memset(dst.data(), 2, dst.size());
  for (int i = 0; i <= iterations; ++i) {
    t.barrier();
    const Interval a = timed([&] { std::memcpy(dst.data(), src.data(), static_cast<size_t>(sent)); });
    t.barrier();
    const Interval b = timed([&] { std::memcpy(dst.data(), src.data(), static_cast<size_t>(returned)); });
    if (i == 0) continue;
    copy_d.push_back(a);
    copy_c.push_back(b);
  }
  std::vector<double> bytes = {sent, returned}, all(2 * static_cast<size_t>(t.world_size()));
  t.all_gather(std::as_bytes(std::span(bytes)), std::as_writable_bytes(std::span(all)));
  double mean_sent = 0, mean_returned = 0;
  for (int r = 0; r < t.world_size(); ++r) {
    mean_sent += all[2 * r] / t.world_size();
    mean_returned += all[2 * r + 1] / t.world_size();
  }
  return {median(makespan_per_iteration(t, dispatch_s)), median(makespan_per_iteration(t, combine_s)),
          median(makespan_per_iteration(t, copy_d)),     median(makespan_per_iteration(t, copy_c)),
          mean_sent,
          mean_returned,
          median(makespan_per_iteration(t, owned_s))};
}

// Free bytes in /dev/shm (0 if it cannot be read).
size_t shm_free_bytes() {
  struct statvfs st {};
  if (statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<size_t>(st.f_bavail) * st.f_frsize;
}

// Low-latency round trip (FP8 dispatch, BF16 combine) of `tokens` per rank.
Figures measure_low_latency(ep::Transport& t, int64_t tokens, int iterations) {
  ep::Buffer buffer(t);
  std::mt19937 rng(11 + static_cast<unsigned>(t.rank()));
  Tensor x = Tensor::empty(DType::kBF16, {tokens, kHidden});
  for (int64_t i = 0; i < x.numel(); ++i) x.mutable_data<bf16>()[i] = float_to_bf16(static_cast<float>(rng() % 1000) / 500.0f - 1.0f);
  const Tensor topk = make_topk(t.rank(), tokens);
  const Tensor weights = Tensor::zeros(DType::kF32, {tokens, kTopK});
  const int64_t per = kExperts / t.world_size();
  std::vector<Interval> dispatch_s, combine_s, copy_s;
  double pairs_in = 0;
  bool zero_copy = false;
  // The experts' output goes into the combine buffer (zero copy where the slot holds it). Its
  // valid rows are written once, after the untimed first dispatch, as the expert GEMM would
  // have; the buffer is the same memory every iteration (the combine's slot, or a tensor the
  // Buffer keeps). A fresh zeroed tensor per iteration would time the page faults of the
  // combine's first reads.
  const int64_t cap = t.world_size() * tokens;
  for (int i = 0; i <= iterations; ++i) {
    t.barrier();
    ep::LowLatencyRecv r;
    const Interval d = timed([&] { r = buffer.low_latency_dispatch(x, topk, tokens, kExperts, true).receive(); });
    t.barrier();
    if (i == 0) {
      Tensor out = buffer.low_latency_combine_buffer(r.handle, DType::kBF16);
      for (int64_t e = 0; e < per; ++e)
        std::memset(static_cast<std::byte*>(out.mutable_raw_data()) + e * cap * kHidden * 2, 0x3c,
                    static_cast<size_t>(r.count[e] * kHidden * 2));
      ep::PendingCombine c = buffer.low_latency_combine(out, weights, r.handle);
      zero_copy = c.zero_copy();
      c.receive();
      for (const int32_t n : r.count) pairs_in += n;
      continue;
    }
    const Interval cb = timed([&] {
      const Tensor out = buffer.low_latency_combine_buffer(r.handle, DType::kBF16);
      buffer.low_latency_combine(out, weights, r.handle).receive();
    });
    dispatch_s.push_back(d);
    combine_s.push_back(cb);
  }
  const double pairs_out = static_cast<double>(tokens * kTopK);
  const double sent = pairs_out * static_cast<double>(row_bytes(true)), returned = pairs_in * kHidden * 2;
  std::vector<std::byte> src(static_cast<size_t>(std::max(sent, returned))), dst(src.size());
  std::memset(src.data(), 1, src.size());
  std::memset(dst.data(), 2, dst.size());
  for (int i = 0; i <= iterations; ++i) {
    t.barrier();
    const Interval c = timed([&] {
      std::memcpy(dst.data(), src.data(), static_cast<size_t>(sent));
      std::memcpy(dst.data(), src.data(), static_cast<size_t>(returned));
    });
    if (i > 0) copy_s.push_back(c);
  }
  return {median(makespan_per_iteration(t, dispatch_s)), median(makespan_per_iteration(t, combine_s)),
          median(makespan_per_iteration(t, copy_s)), 0, sent, returned, 0, zero_copy};
}

// Runs `measure` on `world` shm processes and returns rank 0's figures.
template <typename Measure> Figures on_shm_ranks(int world, size_t slot_bytes, Measure&& measure) {
  int fds[2];
  if (pipe(fds) != 0) raise_errno(errno, "bench ep: pipe");
  ep::TransportOptions o;
  o.slot_bytes = slot_bytes;
  o.control_bytes = 64 << 10;
  o.timeout = std::chrono::seconds(120);
  const std::vector<int> status = ep::run_shm_ranks(world, o, [&](ep::Transport& t) {
    const Figures f = measure(t);
    if (t.rank() == 0 && write(fds[1], &f, sizeof(f)) != static_cast<ssize_t>(sizeof(f)))
      raise_errno(errno, "bench ep: writing the figures");
  });
  close(fds[1]);
  Figures f{};
  const ssize_t got = read(fds[0], &f, sizeof(f));
  close(fds[0]);
  for (size_t r = 0; r < status.size(); ++r)
    if (ep::describe_exit_status(status[r]) != "exited 0")
      raise(ErrorKind::kInternal, "bench ep: rank {} {}", r, ep::describe_exit_status(status[r]));
  if (got != static_cast<ssize_t>(sizeof(f))) raise(ErrorKind::kInternal, "bench ep: rank 0 sent no figures");
  return f;
}

// MPI_Alltoallv of the dispatch byte counts, run under mpirun by the parent bench.
void mpi_peer(const Options& options) {
  MPI_Init(nullptr, nullptr);
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int iterations = options.quick ? 3 : 10;
  for (const EpCase& c : normal_cases(options.quick)) {
    if (c.world != world) continue;
    std::vector<int> send(static_cast<size_t>(world)), recv(send.size()), sd(send.size()), rd(send.size());
    const std::vector<size_t> bytes = dispatch_bytes(rank, world, c.tokens, c.fp8);
    for (int d = 0; d < world; ++d) send[d] = static_cast<int>(bytes[d]);
    MPI_Alltoall(send.data(), 1, MPI_INT, recv.data(), 1, MPI_INT, MPI_COMM_WORLD);
    for (int d = 1; d < world; ++d) {
      sd[d] = sd[d - 1] + send[d - 1];
      rd[d] = rd[d - 1] + recv[d - 1];
    }
    std::vector<char> in(static_cast<size_t>(sd.back() + send.back()), 1), out(static_cast<size_t>(rd.back() + recv.back()));
    std::vector<double> times;
    for (int i = 0; i <= iterations; ++i) {
      MPI_Barrier(MPI_COMM_WORLD);
      const Interval s = timed([&] {
        MPI_Alltoallv(in.data(), send.data(), sd.data(), MPI_BYTE, out.data(), recv.data(), rd.data(), MPI_BYTE, MPI_COMM_WORLD);
      });
      // The step's time as for our ranks (makespan_per_iteration): the ranks share one host's clock.
      double first = s.start, last = s.end;
      MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &last, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (i > 0) times.push_back(last - first);
    }
    if (rank == 0) std::printf("mpi-peer\t%s\t%.9f\n", c.name().c_str(), median(times));
  }
  std::fflush(stdout);
  MPI_Finalize();
}

// Runs this binary under mpirun as the MPI peer for `world` ranks; case name -> seconds.
std::vector<std::pair<std::string, double>> mpi_peer_seconds(int world, bool quick) {
  std::vector<std::pair<std::string, double>> out;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return out;
  self[n] = 0;
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " CACHALOT_MPIEXEC
                    " --oversubscribe --mca btl self,vader -np " + std::to_string(world) + " " + self +
                    " bench ep --mpi-peer" + (quick ? " --quick" : "") + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char line[512];
  while (fgets(line, sizeof(line), p) != nullptr) {
    char name[256];
    double s = 0;
    if (std::sscanf(line, "mpi-peer\t%255[^\t]\t%lf", name, &s) == 2) out.emplace_back(name, s);
  }
  pclose(p);
  if (out.empty()) log::warn("bench ep: the MPI_Alltoallv peer did not run (mpirun missing or failing)");
  return out;
}

// The model with expert parallelism (mini preset, ranks as threads): a prefill forward and a
// decode step with the two-micro-batch overlap on, against the same with it off and one rank.
void model_overlap(const Options& options, Reporter& reporter) {
  const std::string dir = ensure_preset_checkpoint("mini");
  const int64_t batch = 4, prompt = 256, decode_batch = 32, ctx = 256;
  struct Times {
    double prefill = 0, decode = 0;
  };
  auto measure = [&](int ranks, bool overlap) {
    const auto m = model::Model::load(dir, {.ep_ranks = ranks, .ep_overlap = overlap});
    PromptBatch p = make_prompt_batch(*m, batch, prompt, 7);
    Times t;
    t.prefill = median_ns([&] { m->forward(p.steps, p.cache); }, options.quick ? 3 : 7, 1) / 1e9;
    t.decode = decode_step_seconds(*m, decode_batch, ctx, options.quick ? 1.0 : 3.0, options.quick ? 5 : 15);
    return t;
  };
  const Times one = measure(1, false);
  for (const int ranks : {2, 4}) {
    if (options.quick && ranks == 4) continue;
    const Times on = measure(ranks, true), off = measure(ranks, false);
    const std::string pre = fmt::format("mini ep={} prefill batch={} prompt={}", ranks, batch, prompt);
    const std::string dec = fmt::format("mini ep={} decode batch={} context={}", ranks, decode_batch, ctx);
    reporter.add(make_result("ep", pre, "step_time", on.prefill * 1e3, "ms", "no-overlap", off.prefill * 1e3, true));
    reporter.add(make_result("ep", pre, "step_time", on.prefill * 1e3, "ms", "ep=1", one.prefill * 1e3, true));
    reporter.add(make_result("ep", dec, "step_time", on.decode * 1e3, "ms", "no-overlap", off.decode * 1e3, true));
    reporter.add(make_result("ep", dec, "step_time", on.decode * 1e3, "ms", "ep=1", one.decode * 1e3, true));
  }
}

}  // namespace

void run_ep(const Options& options, Reporter& reporter) {
  if (options.mpi_peer) return mpi_peer(options);
  const int iterations = options.quick ? 3 : 10;
  std::vector<std::pair<std::string, double>> peer;
  for (const int world : {2, 4, 8}) {
    if (options.quick && world != 4) continue;
    const auto p = mpi_peer_seconds(world, options.quick);
    peer.insert(peer.end(), p.begin(), p.end());
  }
  auto mpi_seconds = [&](const std::string& name) {
    for (const auto& [n, s] : peer)
      if (n == name) return s;
    return 0.0;
  };
  for (const EpCase& c : normal_cases(options.quick)) {
    const size_t slot = ep::Buffer::normal_slot_bytes(c.world, c.tokens, kHidden, kTopK, c.fp8 ? 1 : 2, 2);
    const Figures f = on_shm_ranks(c.world, slot, [&](ep::Transport& t) { return measure_normal(t, c, iterations); });
    const std::string name = c.name();
    const double gbs = f.dispatch_bytes / f.dispatch_s / 1e9, copy = f.dispatch_bytes / f.memcpy_dispatch_s / 1e9;
    reporter.add(make_result("ep", "dispatch " + name, "bandwidth", gbs, "GB/s", "memcpy-same-bytes", copy, false));
    if (const double s = mpi_seconds(name); s > 0)
      reporter.add(make_result("ep", "dispatch " + name, "bandwidth", gbs, "GB/s", "mpi-alltoallv", f.dispatch_bytes / s / 1e9, false));
    reporter.add(make_result("ep", "dispatch " + name, "latency", f.dispatch_s * 1e6, "us", "memcpy-same-bytes",
                             f.memcpy_dispatch_s * 1e6, true));
    reporter.add(make_result("ep", "dispatch owned-result " + name, "bandwidth", f.dispatch_bytes / f.owned_dispatch_s / 1e9,
                             "GB/s", "memcpy-same-bytes", copy, false));
    reporter.add(make_result("ep", "combine bf16 " + name, "bandwidth", f.combine_bytes / f.combine_s / 1e9, "GB/s",
                             "memcpy-same-bytes", f.combine_bytes / f.memcpy_combine_s / 1e9, false));
  }
  for (const int world : {2, 4, 8}) {
    if (options.quick && world != 4) continue;
    const int64_t tokens = 128;
    // Room for the in-place receive (the masked layout in the slot: one copy per row) and the
    // zero-copy combine buffer after it, where /dev/shm can hold that (2 slots x ranks x 705 MB
    // for V3's shapes: 11 GB at 8 ranks); else the combine copies.
    const int64_t per = kExperts / world;
    const size_t in_place = std::max(ep::Buffer::low_latency_slot_bytes(world, tokens, kHidden, kTopK, per),
                                     ep::Buffer::low_latency_in_place_slot_bytes(world, tokens, kHidden, per, 1));
    const size_t zero_copy = ep::Buffer::low_latency_zero_copy_slot_bytes(world, tokens, kHidden, per, 1, 2);
    const size_t slot = shm_free_bytes() > 2 * world * zero_copy + (size_t{2} << 30) ? zero_copy : in_place;
    const Figures f = on_shm_ranks(world, slot, [&](ep::Transport& t) { return measure_low_latency(t, tokens, iterations); });
    const std::string name = fmt::format("low-latency {} ranks tokens={} fp8 dispatch + bf16 combine{}", world, tokens,
                                         f.zero_copy ? " (zero-copy)" : "");
    reporter.add(make_result("ep", name, "latency", (f.dispatch_s + f.combine_s) * 1e6, "us", "memcpy-same-bytes",
                             f.memcpy_dispatch_s * 1e6, true));
  }
  model_overlap(options, reporter);
}

}  // namespace cachalot::bench
