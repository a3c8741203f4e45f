// Transport: how expert-parallel ranks move bytes. Every rank owns a receive area per slot; one
// collective round on a slot lets each rank write one message into each rank's area (at an
// offset the two agree on: dispatch and combine give every source a fixed region), then each
// rank waits until the messages addressed to it have arrived.
//
//   std::span<std::byte> w = t.send_window(slot, dst, offset, bytes);  // write the message here
//   t.post(slot);                     // my messages of this round are written (or handed over)
//   t.wait(slot);                     // the messages to me of this round have arrived
//   std::span<const std::byte> m = t.received(slot, src);
//
// Slots 0 and 1 carry data (the double buffer: a round's received messages stay valid until the
// next round on the same slot begins, so two results can be outstanding, as in DeepEP's
// low-latency mode); kControlSlot carries small all-gathers. Every wait has a deadline and
// watches the peers: a rank that failed (abort()) or whose process died makes the others raise
// Error(kTimeout) naming it instead of hanging.
//
// Implementations: shared_memory_transport.h (`local`: ranks are threads of one process;
// `shm`: processes on one host over POSIX shared memory), mpi_transport.h (`mpi`).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace cachalot::ep {

inline constexpr int kControlSlot = 2;
inline constexpr std::chrono::milliseconds kNoDeadline{std::chrono::hours(24 * 365 * 10)};
inline constexpr int kNumSlots = 3;

struct TransportOptions {
  // Bytes of each data slot's receive area on every rank.
  size_t slot_bytes = size_t{64} << 20;
  // Bytes one rank may contribute to an all-gather.
  size_t control_bytes = 4096;
  // How long a wait may last before the round fails (DeepEP's host-side timeout is 100 s).
  std::chrono::milliseconds timeout{100'000};
  // Ranks per node: rank / ranks_per_node is the node; 0 = all ranks on one node. The mpi
  // transport finds it from the hosts; others take it as given (to exercise internode paths).
  int ranks_per_node = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual std::string_view name() const = 0;  // "local", "shm", "mpi"
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int ranks_per_node() const = 0;
  int node() const { return rank() / ranks_per_node(); }
  int num_nodes() const { return world_size() / ranks_per_node(); }
  virtual const TransportOptions& options() const = 0;
  // True when send windows are the receiver's memory itself (local, shm): several senders may
  // then hold windows over the same range of a receiver's slot and write disjoint parts of it.
  virtual bool shares_memory() const = 0;
  // How long each wait may last from now on (options().timeout changes with it).
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;

  // Where to write `bytes` for `dst`, to land at `offset` of dst's area of `slot`. At most one
  // message per destination and round; a destination without a window gets an empty message.
  // The first call of a round waits until dst has released the slot's previous round.
  virtual std::span<std::byte> send_window(int slot, int dst, size_t offset, size_t bytes) = 0;
  // Ends my writes of this round: every destination is told (empty messages included).
  // `recv_offset[src]` is where src's message to me lands and `recv_max[src]` its largest size.
  virtual void post(int slot, std::span<const size_t> recv_offset, std::span<const size_t> recv_max) = 0;
  // Waits for every source's message of the round posted last on `slot`.
  virtual void wait(int slot) = 0;
  // The message from `src` of the last completed round on `slot` (valid until the slot's next
  // round begins).
  virtual std::span<const std::byte> received(int slot, int src) const = 0;

  // Pulls (transports that share memory; others raise kInvalidArgument): a rank writes a
  // message into its own area, peers read it there after the round, and nothing is copied.
  //   own_area(slot, offset, bytes): this rank's area of `slot`, to write before the slot's next
  //     round. Only between rounds (the slot's last round waited for); waits until every rank is
  //     done reading this area's last pulled round.
  //   peer_area(slot, src, offset, bytes): src's area (this rank's too) as src left it when it
  //     posted the slot's last completed round.
  //   done_reading(slot): this rank has finished reading the last completed round's areas. The
  //     slot's next round on any rank (and own_area) waits until every rank has said so.
  virtual std::span<std::byte> own_area(int slot, size_t offset, size_t bytes) = 0;
  virtual std::span<const std::byte> peer_area(int slot, int src, size_t offset, size_t bytes) const = 0;
  virtual void done_reading(int slot) = 0;

  // Marks this rank failed: every rank waiting on it raises Error(kTimeout) with `reason`.
  virtual void abort(std::string_view reason) = 0;

  // All-gather over kControlSlot: out[r * mine.size() ...] = rank r's `mine` (same size on every
  // rank, at most options().control_bytes).
  void all_gather(std::span<const std::byte> mine, std::span<std::byte> out) { all_gather(mine, out, options().timeout); }
  // The same with its own deadline: kNoDeadline for a rank that idles until a peer has work
  // (it still notices a peer that failed or died).
  void all_gather(std::span<const std::byte> mine, std::span<std::byte> out, std::chrono::milliseconds timeout);
  void barrier();
};

}  // namespace cachalot::ep
