// Replaying several rank traces on several processes with MPI (docs/replay.md, "Several ranks",
// "MPI"): the rank traces are dealt out to the MPI processes (trace k to process k mod N); every
// process reads every trace's metadata (attributes: cheap) and steps the recipe alike, counts
// only its own traces' values (on its OpenMP threads), and per step the processes all-reduce
// the packed counts (replay_options::owns, all_reduce). The result is the one-process result,
// bit for bit. Target fpscope_replay_mpi (built when CMake finds MPI; not installed).
#pragma once

#include <span>
#include <string>

#include "fpscope/replay.hpp"

namespace fpscope {

/// Whether this build has MPI.
bool mpi_built();

/// Runs in every process of `mpirun -np N`: MPI_Init (unless initialised), the replay, and
/// MPI_Finalize is left to mpi_finish(). Returns the result in every process (print it from
/// rank 0: mpi_rank() == 0). Not contained in a worker process (a fork under MPI is unsafe):
/// a libhdf5 crash ends the run. Errors throw as replay_files'; a caller that catches one in
/// one process must call mpi_abort() (the others wait in an all-reduce). option_error without MPI.
replay_result replay_files_mpi(std::span<const std::string> paths, replay_options o);
int mpi_rank();
void mpi_finish();
[[noreturn]] void mpi_abort(int status);

}  // namespace fpscope
