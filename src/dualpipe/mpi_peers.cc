// open_mpi_peers: pipeline ranks as processes under mpirun. Sends copy the data and post an
// MPI_Isend (completed ones are reaped on later calls; the rest at destruction); receives post an
// MPI_Irecv and poll it against the deadline, so a silent peer fails the wait instead of hanging.
#include <mpi.h>

#include <cstdio>
#include <list>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/mpi_support.h"
#include "dualpipe/peer_comm.h"

namespace cachalot::dualpipe {
namespace {

void check_mpi(int rc, const char* what) { mpi::check(rc, "dualpipe", what); }

class MpiPeers final : public PeerComm {
 public:
  explicit MpiPeers(std::chrono::milliseconds timeout) : timeout_(timeout) {
    mpi::start(MPI_THREAD_FUNNELED, "dualpipe (the mpi peers)");
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiPeers() override {
    int down = 0;
    MPI_Finalized(&down);
    if (down) return;
    for (Pending& p : pending_) MPI_Wait(&p.request, MPI_STATUS_IGNORE);
    MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void send(int dst, int tag, std::span<const std::byte> data) override {
    CACHALOT_CHECK_ARG(dst >= 0 && dst < size_, "dualpipe: no rank {} among {}", dst, size_);
    reap();
    Pending& p = pending_.emplace_back();
    p.data.assign(data.begin(), data.end());
    check_mpi(MPI_Isend(p.data.data(), static_cast<int>(p.data.size()), MPI_BYTE, dst, tag, comm_, &p.request), "MPI_Isend");
  }

  void recv(int src, int tag, std::span<std::byte> data) override {
    CACHALOT_CHECK_ARG(src >= 0 && src < size_, "dualpipe: no rank {} among {}", src, size_);
    // One more than asked: a longer message shows up as a wrong count instead of an MPI error.
    std::vector<std::byte> buffer(data.size() + 1);
    MPI_Request request;
    check_mpi(MPI_Irecv(buffer.data(), static_cast<int>(buffer.size()), MPI_BYTE, src, tag, comm_, &request), "MPI_Irecv");
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    MPI_Status status;
    for (int done = 0;;) {
      check_mpi(MPI_Test(&request, &done, &status), "MPI_Test");
      if (done) break;
      reap();
      if (std::chrono::steady_clock::now() > deadline) {
        MPI_Cancel(&request);
        MPI_Request_free(&request);
        raise(ErrorKind::kTimeout, "dualpipe: rank {} waited {} ms for tag {} from rank {}", rank_, timeout_.count(), tag, src);
      }
      std::this_thread::yield();
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (static_cast<size_t>(count) != data.size())
      raise(ErrorKind::kCorruptData, "dualpipe: rank {} got {} bytes with tag {} from rank {}, expected {}", rank_, count, tag, src,
            data.size());
    std::copy(buffer.begin(), buffer.begin() + count, data.begin());
  }

  void abort(std::string_view reason) override {
    // mpirun ends the other ranks when one exits non-zero; say why first.
    std::fprintf(stderr, "dualpipe: rank %d failed: %.*s\n", rank_, static_cast<int>(reason.size()), reason.data());
  }

 private:
  struct Pending {
    std::vector<std::byte> data;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  void reap() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      it = done ? pending_.erase(it) : std::next(it);
    }
  }

  std::chrono::milliseconds timeout_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::list<Pending> pending_;
};

}  // namespace

std::unique_ptr<PeerComm> open_mpi_peers(std::chrono::milliseconds timeout) { return std::make_unique<MpiPeers>(timeout); }

}  // namespace cachalot::dualpipe
