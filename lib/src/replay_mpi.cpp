// fpscope/replay_mpi.hpp. Compiled with FPSCOPE_HAVE_MPI where CMake found MPI; without it
// every entry point says so.
#include "fpscope/replay_mpi.hpp"

#include <cstdlib>
#include <memory>
#include <vector>

#include "fpscope/options.hpp"
#include "fpscope/trace.hpp"

#if FPSCOPE_HAVE_MPI
// The C API only: OpenMPI 4 and MPICH otherwise pull in their deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace fpscope {

#if FPSCOPE_HAVE_MPI

namespace {
void init() {
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready) MPI_Init(nullptr, nullptr);
}
}  // namespace

bool mpi_built() { return true; }

int mpi_rank() {
  init();
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

void mpi_finish() {
  int ready = 0, done = 0;
  MPI_Initialized(&ready);
  MPI_Finalized(&done);
  if (ready && !done) MPI_Finalize();
}

void mpi_abort(int status) {
  init();
  MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);  // not reached
}

replay_result replay_files_mpi(std::span<const std::string> paths, replay_options o) {
  init();
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (paths.size() < 2) throw option_error("--mpi: needs several rank traces");
  check(o);
  std::vector<std::unique_ptr<trace_reader>> open;
  std::vector<const trace_reader*> rs;
  for (const auto& p : paths) open.push_back(std::make_unique<trace_reader>(p)), rs.push_back(open.back().get());
  // Trace k (in rank order: the engine sorts the readers) is counted by process k mod size.
  o.owns = [rank, size](std::size_t k) { return k % std::size_t(size) == std::size_t(rank); };
  o.all_reduce = [](std::span<std::uint64_t> v) {
    if (!v.empty()) MPI_Allreduce(MPI_IN_PLACE, v.data(), int(v.size()), MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  };
  if (rank != 0) o.progress = nullptr;
  return replay(rs, o);
}

#else

bool mpi_built() { return false; }
int mpi_rank() { return 0; }
void mpi_finish() {}
void mpi_abort(int status) { std::exit(status); }
replay_result replay_files_mpi(std::span<const std::string>, replay_options) {
  throw option_error("--mpi: this fpscope was built without MPI (install OpenMPI, e.g. Debian's libopenmpi-dev, and configure again)");
}

#endif

}  // namespace fpscope
