#include "ep/mpi_transport.h"

#include <mpi.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "core/mpi_support.h"
#include "ep/wait.h"

namespace cachalot::ep {
namespace {

void check_mpi(int rc, const char* what) { mpi::check(rc, "ep", what); }

void init_mpi_once() { mpi::start(MPI_THREAD_SERIALIZED, "ep (the mpi transport)"); }

int ranks_on_my_host(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm host;
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host), "MPI_Comm_split_type");
  int n = 0;
  MPI_Comm_size(host, &n);
  MPI_Comm_free(&host);
  // Every host must hold the same number of consecutive ranks (mpirun --map-by node breaks it).
  int lo = 0, hi = 0;
  MPI_Allreduce(&n, &lo, 1, MPI_INT, MPI_MIN, comm);
  MPI_Allreduce(&n, &hi, 1, MPI_INT, MPI_MAX, comm);
  if (lo != hi) raise(ErrorKind::kUnsupported, "ep: hosts hold between {} and {} ranks; give every host the same number", lo, hi);
  return n;
}

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(const TransportOptions& options) : options_(options) {
    init_mpi_once();
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
    if (options_.ranks_per_node <= 0) options_.ranks_per_node = ranks_on_my_host(comm_);
    CACHALOT_CHECK_ARG(world_ % options_.ranks_per_node == 0, "ep: {} MPI ranks do not split into nodes of {}", world_,
                       options_.ranks_per_node);
    for (int s = 0; s < kNumSlots; ++s) {
      const size_t bytes = s == kControlSlot ? static_cast<size_t>(world_) * options_.control_bytes : options_.slot_bytes;
      slots_[s].area.resize(bytes);
      slots_[s].staging.resize(static_cast<size_t>(world_));
      slots_[s].sent.assign(static_cast<size_t>(world_), false);
      slots_[s].recv_offset.assign(static_cast<size_t>(world_), 0);
      slots_[s].recv_bytes.assign(static_cast<size_t>(world_), 0);
    }
  }
  ~MpiTransport() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  std::string_view name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int ranks_per_node() const override { return options_.ranks_per_node; }
  const TransportOptions& options() const override { return options_; }
  bool shares_memory() const override { return false; }

  std::span<std::byte> send_window(int slot, int dst, size_t offset, size_t bytes) override {
    Slot& s = slot_at(slot, dst);
    if (!s.requests.empty()) raise(ErrorKind::kInternal, "ep: send_window on slot {} before wait()", slot);
    CACHALOT_CHECK_ARG(!s.sent[dst], "ep: two messages to rank {} in one round of slot {}", dst, slot);
    CACHALOT_CHECK_ARG(offset + bytes <= s.area.size(), "ep: a message of {} bytes at offset {} overflows rank {}'s slot of {} bytes",
                       bytes, offset, dst, s.area.size());
    s.sent[dst] = true;
    s.staging[dst].resize(bytes);
    return s.staging[dst];
  }

  void post(int slot, std::span<const size_t> recv_offset, std::span<const size_t> recv_max) override {
    Slot& s = slot_at(slot, rank_);
    if (!s.requests.empty()) raise(ErrorKind::kInternal, "ep: post on slot {} twice without wait()", slot);
    CACHALOT_ASSERT(recv_offset.size() == static_cast<size_t>(world_) && recv_max.size() == recv_offset.size());
    s.requests.resize(static_cast<size_t>(2 * world_));
    for (int src = 0; src < world_; ++src) {
      CACHALOT_ASSERT(recv_offset[src] + recv_max[src] <= s.area.size());
      s.recv_offset[src] = recv_offset[src];
      check_mpi(MPI_Irecv(s.area.data() + recv_offset[src], static_cast<int>(recv_max[src]), MPI_BYTE, src, slot, comm_,
                          &s.requests[src]),
                "MPI_Irecv");
    }
    for (int dst = 0; dst < world_; ++dst) {
      if (!s.sent[dst]) s.staging[dst].clear();
      check_mpi(MPI_Isend(s.staging[dst].data(), static_cast<int>(s.staging[dst].size()), MPI_BYTE, dst, slot, comm_,
                          &s.requests[world_ + dst]),
                "MPI_Isend");
    }
  }

  void set_timeout(std::chrono::milliseconds timeout) override { options_.timeout = timeout; }

  void wait(int slot) override {
    Slot& s = slot_at(slot, rank_);
    CACHALOT_ASSERT(!s.requests.empty());
    std::vector<MPI_Status> status(s.requests.size());
    int done = 0;
    wait_until(
        [&] {
          check_mpi(MPI_Testall(static_cast<int>(s.requests.size()), s.requests.data(), &done, status.data()), "MPI_Testall");
          return done != 0;
        },
        [] {}, options_.timeout, [&] { return fmt::format("the messages of slot {} (mpi rank {})", slot, rank_); });
    for (int src = 0; src < world_; ++src) {
      int count = 0;
      MPI_Get_count(&status[src], MPI_BYTE, &count);
      s.recv_bytes[src] = static_cast<size_t>(count);
    }
    s.requests.clear();
    s.sent.assign(static_cast<size_t>(world_), false);
  }

  std::span<const std::byte> received(int slot, int src) const override {
    const Slot& s = slots_[slot];
    return {s.area.data() + s.recv_offset[src], s.recv_bytes[src]};
  }

  // Ranks on other hosts cannot read each other's memory: no pulls (shares_memory() is false).
  std::span<std::byte> own_area(int, size_t, size_t) override { no_pulls(); }
  std::span<const std::byte> peer_area(int, int, size_t, size_t) const override { no_pulls(); }
  void done_reading(int) override { no_pulls(); }

  void abort(std::string_view reason) override {
    log::error("ep: mpi rank {} aborts the job: {}", rank_, reason);
    MPI_Abort(comm_, 1);
  }

 private:
  [[noreturn]] static void no_pulls() {
    raise(ErrorKind::kInvalidArgument, "ep: the mpi transport does not share memory; pulls need local or shm");
  }

  struct Slot {
    std::vector<std::byte> area;
    std::vector<std::vector<std::byte>> staging;  // [dst]
    std::vector<bool> sent;
    std::vector<size_t> recv_offset, recv_bytes;
    std::vector<MPI_Request> requests;  // [recv per src, send per dst] while a round is posted
  };

  Slot& slot_at(int slot, int peer) {
    CACHALOT_ASSERT(slot >= 0 && slot < kNumSlots);
    CACHALOT_CHECK_ARG(peer >= 0 && peer < world_, "ep: rank {} outside a group of {}", peer, world_);
    return slots_[slot];
  }

  TransportOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
  Slot slots_[kNumSlots];
};

}  // namespace

int mpirun_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

int mpi_ranks_per_host() {
  init_mpi_once();
  return ranks_on_my_host(MPI_COMM_WORLD);
}

std::unique_ptr<Transport> open_mpi_transport(const TransportOptions& options) {
  return std::make_unique<MpiTransport>(options);
}

}  // namespace cachalot::ep
