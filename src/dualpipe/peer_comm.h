// Point-to-point messages between pipeline ranks: what a pipeline schedule needs (unlike the
// all-to-all rounds of ep/transport.h). Sends are buffered and return at once, as DualPipe's
// asynchronous isend does; a receive blocks until the message with that tag from that peer
// arrives. Messages with one (source, tag) arrive in the order sent.
//
//   local: ranks are threads of one process (run_local_peers);
//   mpi:   ranks are processes under mpirun (open_mpi_peers).
//
// A receive gives up after the timeout, or at once when a peer aborted, with Error(kTimeout)
// naming the peer and tag, so a failed rank never leaves the others hanging.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

namespace cachalot::dualpipe {

class PeerComm {
 public:
  virtual ~PeerComm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void send(int dst, int tag, std::span<const std::byte> data) = 0;
  // `data` must be exactly the size sent (else Error(kCorruptData)).
  virtual void recv(int src, int tag, std::span<std::byte> data) = 0;

  void send_floats(int dst, int tag, std::span<const float> data) { send(dst, tag, std::as_bytes(data)); }
  void recv_floats(int src, int tag, std::span<float> data) { recv(src, tag, std::as_writable_bytes(data)); }
  // Marks this rank failed: peers waiting on anything fail with `reason`.
  virtual void abort(std::string_view reason) = 0;
};

// Runs body(comm) on `ranks` threads. A rank that throws aborts the group; after all threads
// end, the first failing rank's exception is rethrown.
void run_local_peers(int ranks, std::chrono::milliseconds timeout, const std::function<void(PeerComm&)>& body);

// This process's rank among the processes mpirun started (MPI is initialised on first use).
std::unique_ptr<PeerComm> open_mpi_peers(std::chrono::milliseconds timeout);

}  // namespace cachalot::dualpipe
