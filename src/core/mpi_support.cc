#include "core/mpi_support.h"

#include <mpi.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "core/error.h"

namespace cachalot::mpi {

void check(int rc, std::string_view who, std::string_view what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  raise(ErrorKind::kIo, "{}: {} failed: {}", who, what, std::string(text, static_cast<size_t>(len)));
}

void start(int needed_thread_level, std::string_view who) {
  static std::once_flag once;
  std::call_once(once, [] {
    int up = 0;
    MPI_Initialized(&up);
    if (up) return;
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "mpi", "MPI_Init_thread");
    std::atexit([] {
      int down = 0;
      MPI_Finalized(&down);
      if (!down) MPI_Finalize();
    });
  });
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < needed_thread_level)
    raise(ErrorKind::kUnsupported, "{}: this MPI offers thread level {}, {} is needed", who, provided, needed_thread_level);
}

}  // namespace cachalot::mpi
