#include "ep/shared_memory_transport.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "ep/wait.h"

namespace cachalot::ep {
namespace {

constexpr uint64_t kMagic = 0x43414348414c4f54;  // "CACHALOT"
constexpr size_t kPage = 4096;
constexpr size_t kFailureBytes = 256;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct ArenaHeader {
  uint64_t magic;
  uint32_t world;
  uint32_t ranks_per_node;
  uint64_t slot_bytes;
  uint64_t control_bytes;
  uint32_t attached;
  int32_t failed_rank;  // -1 while every rank is healthy
  int32_t pids[kMaxRanks];
  char failure[kMaxRanks][kFailureBytes];  // written by the failing rank before failed_rank
};

// One cache line per flag: ranks polling different flags never share a line.
struct alignas(64) ReadyFlag {
  uint64_t round;       // the receiver's area of this slot accepts this round's messages
  uint64_t read_round;  // the last round of this slot whose areas the rank has finished pulling from
};
struct alignas(64) MessageFlag {
  uint64_t round;  // the sender's last posted round (written last, with release)
  uint64_t bytes;
  uint64_t offset;
};

template <typename T> std::atomic_ref<T> atomic(T& v) { return std::atomic_ref<T>(v); }

// Where everything sits in the arena (the same arithmetic on every rank).
class ArenaLayout {
 public:
  ArenaLayout(int world, const TransportOptions& o) : world_(static_cast<size_t>(world)) {
    slot_bytes_[0] = slot_bytes_[1] = round_up(o.slot_bytes, kPage);
    slot_bytes_[kControlSlot] = round_up(world_ * o.control_bytes, kPage);
    ready_ = round_up(sizeof(ArenaHeader), kPage);
    messages_ = ready_ + round_up(world_ * kNumSlots * sizeof(ReadyFlag), kPage);
    areas_ = messages_ + round_up(world_ * world_ * kNumSlots * sizeof(MessageFlag), kPage);
    rank_area_ = slot_bytes_[0] + slot_bytes_[1] + slot_bytes_[kControlSlot];
    total_ = areas_ + world_ * rank_area_;
  }
  size_t total() const { return total_; }
  size_t slot_bytes(int slot) const { return slot_bytes_[slot]; }

  ArenaHeader& header(std::byte* base) const { return *reinterpret_cast<ArenaHeader*>(base); }
  ReadyFlag& ready(std::byte* base, int rank, int slot) const {
    return reinterpret_cast<ReadyFlag*>(base + ready_)[static_cast<size_t>(rank) * kNumSlots + slot];
  }
  MessageFlag& message(std::byte* base, int dst, int src, int slot) const {
    return reinterpret_cast<MessageFlag*>(base + messages_)[(static_cast<size_t>(dst) * world_ + src) * kNumSlots + slot];
  }
  std::byte* area(std::byte* base, int rank, int slot) const {
    std::byte* p = base + areas_ + static_cast<size_t>(rank) * rank_area_;
    for (int s = 0; s < slot; ++s) p += slot_bytes_[s];
    return p;
  }

 private:
  size_t world_;
  size_t slot_bytes_[kNumSlots];
  size_t ready_ = 0, messages_ = 0, areas_ = 0, rank_area_ = 0, total_ = 0;
};

// True unless the process is gone or a zombie (kill(pid, 0) succeeds on zombies).
bool process_alive(int pid) {
  if (pid <= 0) return true;  // not attached yet
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

class SharedMemoryTransport final : public Transport {
 public:
  SharedMemoryTransport(std::shared_ptr<void> arena, std::byte* base, int rank, int world, const TransportOptions& options,
                        bool processes)
      : arena_(std::move(arena)), base_(base), rank_(rank), world_(world), options_(options), processes_(processes),
        layout_(world, options) {
    if (options_.ranks_per_node <= 0) options_.ranks_per_node = world;
    CACHALOT_CHECK_ARG(world % options_.ranks_per_node == 0, "ep: {} ranks do not split into nodes of {}", world,
                       options_.ranks_per_node);
    for (auto& s : slots_) {
      s.window.assign(static_cast<size_t>(world), false);
      s.recv_offset.assign(static_cast<size_t>(world), 0);
      s.recv_max.assign(static_cast<size_t>(world), 0);
    }
  }

  std::string_view name() const override { return processes_ ? "shm" : "local"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int ranks_per_node() const override { return options_.ranks_per_node; }
  const TransportOptions& options() const override { return options_; }
  bool shares_memory() const override { return true; }

  std::span<std::byte> send_window(int slot, int dst, size_t offset, size_t bytes) override {
    check_usable(slot, dst);
    SlotState& s = slots_[slot];
    if (s.phase == Phase::kPosted) raise(ErrorKind::kInternal, "ep: send_window on slot {} before wait()", slot);
    begin_round(slot);
    CACHALOT_CHECK_ARG(!s.window[dst], "ep: two messages to rank {} in one round of slot {}", dst, slot);
    CACHALOT_CHECK_ARG(offset + bytes <= layout_.slot_bytes(slot),
                       "ep: a message of {} bytes at offset {} overflows rank {}'s slot of {} bytes", bytes, offset,
                       dst, layout_.slot_bytes(slot));
    await_ready(slot, dst);
    s.window[dst] = true;
    MessageFlag& m = layout_.message(base_, dst, rank_, slot);
    m.bytes = bytes;
    m.offset = offset;
    return {layout_.area(base_, dst, slot) + offset, bytes};
  }

  void post(int slot, std::span<const size_t> recv_offset, std::span<const size_t> recv_max) override {
    check_usable(slot, rank_);
    SlotState& s = slots_[slot];
    if (s.phase == Phase::kPosted) raise(ErrorKind::kInternal, "ep: post on slot {} twice without wait()", slot);
    CACHALOT_ASSERT(recv_offset.size() == static_cast<size_t>(world_) && recv_max.size() == recv_offset.size());
    begin_round(slot);
    s.recv_offset.assign(recv_offset.begin(), recv_offset.end());
    s.recv_max.assign(recv_max.begin(), recv_max.end());
    for (int dst = 0; dst < world_; ++dst) {
      MessageFlag& m = layout_.message(base_, dst, rank_, slot);
      if (!s.window[dst]) {
        await_ready(slot, dst);  // the receiver must be done reading the flag's previous round
        m.bytes = 0;
        m.offset = 0;
      }
      atomic(m.round).store(s.round, std::memory_order_release);
    }
    s.phase = Phase::kPosted;
  }

  void set_timeout(std::chrono::milliseconds timeout) override { options_.timeout = timeout; }

  void wait(int slot) override {
    check_usable(slot, rank_);
    SlotState& s = slots_[slot];
    CACHALOT_ASSERT(s.phase == Phase::kPosted);
    for (int src = 0; src < world_; ++src) {
      MessageFlag& m = layout_.message(base_, rank_, src, slot);
      guarded_wait([&] { return atomic(m.round).load(std::memory_order_acquire) >= s.round; }, src,
                   [&] { return fmt::format("rank {}'s message (slot {}, round {})", src, slot, s.round); });
      if (m.bytes > 0 && (m.offset != s.recv_offset[src] || m.bytes > s.recv_max[src]))
        raise(ErrorKind::kInternal, "ep: rank {} wrote {} bytes at offset {} of slot {}; rank {} expected at most {} at {}",
              src, m.bytes, m.offset, slot, rank_, s.recv_max[src], s.recv_offset[src]);
    }
    s.phase = Phase::kIdle;
    s.completed = true;
  }

  std::span<const std::byte> received(int slot, int src) const override {
    CACHALOT_ASSERT(slot >= 0 && slot < kNumSlots && src >= 0 && src < world_ && slots_[slot].completed);
    const MessageFlag& m = layout_.message(base_, rank_, src, slot);
    return {layout_.area(base_, rank_, slot) + m.offset, m.bytes};
  }

  std::span<std::byte> own_area(int slot, size_t offset, size_t bytes) override {
    check_usable(slot, rank_);
    const SlotState& s = slots_[slot];
    if (s.phase != Phase::kIdle)
      raise(ErrorKind::kInternal, "ep: own_area on slot {} while its round {} is in progress", slot, s.round);
    check_range(slot, offset, bytes);
    await_readers(slot);
    return {layout_.area(base_, rank_, slot) + offset, bytes};
  }

  std::span<const std::byte> peer_area(int slot, int src, size_t offset, size_t bytes) const override {
    CACHALOT_ASSERT(slot >= 0 && slot < kNumSlots && src >= 0 && src < world_ && slots_[slot].completed);
    check_range(slot, offset, bytes);
    return {layout_.area(base_, src, slot) + offset, bytes};
  }

  void done_reading(int slot) override {
    SlotState& s = slots_[slot];
    CACHALOT_ASSERT(slot >= 0 && slot < kNumSlots && s.completed);
    s.pulled_round = s.round;
    atomic(layout_.ready(base_, rank_, slot).read_round).store(s.round, std::memory_order_release);
  }

  void abort(std::string_view reason) override {
    failed_ = true;
    ArenaHeader& h = layout_.header(base_);
    std::snprintf(h.failure[rank_], kFailureBytes, "%.*s", static_cast<int>(reason.size()), reason.data());
    int32_t none = -1;
    atomic(h.failed_rank).compare_exchange_strong(none, rank_, std::memory_order_acq_rel);
  }

 private:
  enum class Phase { kIdle, kWriting, kPosted };
  struct SlotState {
    Phase phase = Phase::kIdle;
    uint64_t round = 0;
    uint64_t pulled_round = 0;  // the last round whose areas were read in place (done_reading)
    bool completed = false;
    std::vector<bool> window;  // a message to this destination was written this round
    std::vector<size_t> recv_offset, recv_max;
  };

  void check_usable(int slot, int peer) const {
    CACHALOT_ASSERT(slot >= 0 && slot < kNumSlots);
    CACHALOT_CHECK_ARG(peer >= 0 && peer < world_, "ep: rank {} outside a group of {}", peer, world_);
    if (failed_) raise(ErrorKind::kTimeout, "ep: rank {}'s transport failed earlier; restart the group", rank_);
  }

  // The first write or post of a round releases my area of the slot for the new round (once
  // every rank is done pulling from it).
  void begin_round(int slot) {
    SlotState& s = slots_[slot];
    if (s.phase != Phase::kIdle) return;
    await_readers(slot);
    ++s.round;
    s.completed = false;
    s.window.assign(static_cast<size_t>(world_), false);
    atomic(layout_.ready(base_, rank_, slot).round).store(s.round, std::memory_order_release);
    s.phase = Phase::kWriting;
  }

  // Every rank has finished reading the slot's last pulled round (all ranks pull in the same
  // rounds, so this rank's own record names it).
  void await_readers(int slot) {
    const uint64_t round = slots_[slot].pulled_round;
    if (round == 0) return;
    for (int r = 0; r < world_; ++r) {
      ReadyFlag& f = layout_.ready(base_, r, slot);
      guarded_wait([&] { return atomic(f.read_round).load(std::memory_order_acquire) >= round; }, r,
                   [&] { return fmt::format("rank {} to finish reading slot {} (round {})", r, slot, round); });
    }
  }

  void check_range(int slot, size_t offset, size_t bytes) const {
    CACHALOT_CHECK_ARG(offset + bytes <= layout_.slot_bytes(slot), "ep: {} bytes at offset {} overflow a slot of {} bytes",
                       bytes, offset, layout_.slot_bytes(slot));
  }

  void await_ready(int slot, int dst) {
    const uint64_t round = slots_[slot].round;
    ReadyFlag& r = layout_.ready(base_, dst, slot);
    guarded_wait([&] { return atomic(r.round).load(std::memory_order_acquire) >= round; }, dst,
                 [&] { return fmt::format("rank {} to release slot {} (round {})", dst, slot, round); });
  }

  // Waits with the group's health checks; a failure here is recorded so peers stop too.
  template <typename Ready, typename Describe> void guarded_wait(Ready&& ready, int peer, Describe&& describe) {
    try {
      wait_until(ready, [&] { check_group(peer); }, options_.timeout, describe);
    } catch (const Error& e) {
      abort(fmt::format("rank {}: {}", rank_, e.what()));
      throw;
    }
  }

  void check_group(int peer) {
    ArenaHeader& h = layout_.header(base_);
    const int32_t failed = atomic(h.failed_rank).load(std::memory_order_acquire);
    if (failed >= 0 && failed != rank_)
      raise(ErrorKind::kTimeout, "ep: rank {} failed ({}); rank {} stops too", failed, h.failure[failed], rank_);
    if (processes_ && peer != rank_ && !process_alive(h.pids[peer]))
      raise(ErrorKind::kTimeout, "ep: rank {} (pid {}) exited while rank {} waited for it", peer, h.pids[peer], rank_);
  }

  std::shared_ptr<void> arena_;  // keeps the heap block or the mapping alive
  std::byte* base_;
  int rank_, world_;
  TransportOptions options_;
  bool processes_;
  ArenaLayout layout_;
  SlotState slots_[kNumSlots];
  bool failed_ = false;
};

void init_header(ArenaHeader& h, int world, const TransportOptions& o) {
  h.world = static_cast<uint32_t>(world);
  h.ranks_per_node = static_cast<uint32_t>(o.ranks_per_node);
  h.slot_bytes = o.slot_bytes;
  h.control_bytes = o.control_bytes;
  h.attached = 0;
  h.failed_rank = -1;
  atomic(h.magic).store(kMagic, std::memory_order_release);
}

void check_world(int world) {
  CACHALOT_CHECK_ARG(world >= 1 && world <= kMaxRanks, "ep: {} ranks; between 1 and {} are supported", world, kMaxRanks);
}

// Waits for rank 0's header and refuses a group made with other sizes (before mapping it all).
void check_creator_sizes(int fd, const std::string& name, int world, const TransportOptions& options,
                         std::chrono::steady_clock::time_point deadline) {
  void* head = mmap(nullptr, sizeof(ArenaHeader), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (head == MAP_FAILED) {
    const int err = errno;
    close(fd);
    raise_errno(err, fmt::format("ep: cannot map shared memory {}", name));
  }
  ArenaHeader& h = *static_cast<ArenaHeader*>(head);
  std::string problem;
  while (atomic(h.magic).load(std::memory_order_acquire) != kMagic) {
    if (std::chrono::steady_clock::now() > deadline) {
      problem = "was never initialised";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (problem.empty() && (h.world != static_cast<uint32_t>(world) || h.slot_bytes != options.slot_bytes ||
                          h.control_bytes != options.control_bytes))
    problem = fmt::format("was made for {} ranks with {}-byte slots; this rank asked for {} and {}", h.world, h.slot_bytes,
                          world, options.slot_bytes);
  munmap(head, sizeof(ArenaHeader));
  if (problem.empty()) return;
  close(fd);
  raise(problem.starts_with("was never") ? ErrorKind::kTimeout : ErrorKind::kInvalidArgument, "ep: shared memory {} {}", name,
        problem);
}

}  // namespace

size_t shared_arena_bytes(int world, const TransportOptions& options) { return ArenaLayout(world, options).total(); }

std::vector<std::unique_ptr<Transport>> make_local_group(int world, const TransportOptions& options) {
  check_world(world);
  const size_t bytes = shared_arena_bytes(world, options);
  // calloc: zeroed pages come from the kernel lazily, so an arena sized for the worst case costs
  // only what is touched.
  std::shared_ptr<void> arena(std::calloc(1, bytes + kPage), std::free);
  if (!arena) raise(ErrorKind::kResourceExhausted, "ep: cannot allocate a {} MiB local arena", bytes >> 20);
  auto* base = reinterpret_cast<std::byte*>(round_up(reinterpret_cast<uintptr_t>(arena.get()), kPage));
  init_header(*reinterpret_cast<ArenaHeader*>(base), world, options);
  std::vector<std::unique_ptr<Transport>> group;
  for (int r = 0; r < world; ++r)
    group.push_back(std::make_unique<SharedMemoryTransport>(arena, base, r, world, options, /*processes=*/false));
  return group;
}

std::unique_ptr<Transport> open_shm_transport(const std::string& name, int rank, int world,
                                              const TransportOptions& options) {
  check_world(world);
  CACHALOT_CHECK_ARG(rank >= 0 && rank < world, "ep: rank {} outside a group of {}", rank, world);
  CACHALOT_CHECK_ARG(name.size() > 1 && name[0] == '/' && name.find('/', 1) == std::string::npos,
                     "ep: shared-memory name '{}' must look like /name", name);
  const size_t bytes = shared_arena_bytes(world, options);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + options.timeout;
  int fd = -1;
  if (rank == 0) {
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
      raise_errno(errno, fmt::format("ep: cannot create shared memory {} (a stale group? remove /dev/shm{})", name, name));
    const int rc = ftruncate(fd, static_cast<off_t>(bytes)) == 0 ? posix_fallocate(fd, 0, static_cast<off_t>(bytes)) : errno;
    if (rc != 0) {
      close(fd);
      shm_unlink(name.c_str());
      raise(ErrorKind::kResourceExhausted, "ep: /dev/shm cannot hold the {} MiB arena of {} ranks ({}); free space or lower the buffer sizes",
            bytes >> 20, world, std::strerror(rc));
    }
  } else {
    // Rank 0 may not have created it yet.
    for (;;) {
      fd = shm_open(name.c_str(), O_RDWR, 0600);
      struct stat st {};
      if (fd >= 0 && fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= sizeof(ArenaHeader)) break;
      if (fd >= 0) close(fd);
      if (Clock::now() > deadline)
        raise(ErrorKind::kTimeout, "ep: shared memory {} did not appear within {} ms (is rank 0 running?)", name,
              options.timeout.count());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    check_creator_sizes(fd, name, world, options, deadline);
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) raise_errno(errno, fmt::format("ep: cannot map shared memory {}", name));
  std::shared_ptr<void> arena(map, [bytes](void* p) { munmap(p, bytes); });
  auto* base = static_cast<std::byte*>(map);
  ArenaHeader& h = *reinterpret_cast<ArenaHeader*>(base);
  if (rank == 0) init_header(h, world, options);
  atomic(h.pids[rank]).store(static_cast<int32_t>(getpid()), std::memory_order_release);
  atomic(h.attached).fetch_add(1, std::memory_order_acq_rel);
  auto transport = std::make_unique<SharedMemoryTransport>(arena, base, rank, world, options, /*processes=*/true);
  try {
    wait_until([&] { return atomic(h.attached).load(std::memory_order_acquire) == static_cast<uint32_t>(world); },
               [] {}, options.timeout, [&] { return fmt::format("all {} ranks to join {}", world, name); });
  } catch (const Error&) {
    if (rank == 0) shm_unlink(name.c_str());
    throw;
  }
  if (rank == 0) shm_unlink(name.c_str());  // the mappings stay; the name goes
  return transport;
}

}  // namespace cachalot::ep
