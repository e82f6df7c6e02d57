// Include once in the source file with an executable's main(): OpenMP's idle threads then sleep instead
// of spinning. The executor's parallel loops and oneDNN's convolutions run on OpenMP's threads
// (libgomp, parallel.cpp), whose default is to spin for some milliseconds after each parallel region;
// with more runnable threads than cores (ctest -j2, `mopt batch` workers, a busy machine) the spinning
// threads took the cores from the ones with work: squeezenet went from 10 to 140 ms p50 beside a build.
//
// libgomp reads OMP_WAIT_POLICY once, when it is loaded, before any constructor of mopt's runs; only an
// executable's .preinit_array runs earlier. A value the user set is kept (OMP_WAIT_POLICY=ACTIVE spins).
// Programs that load mopt's library (the C++ API, the Python module) keep their own OpenMP setting.
#pragma once
#include <cstdlib>

namespace mopt::exec::openmp_env {

static void passive_wait_policy(int, char**, char**) { setenv("OMP_WAIT_POLICY", "PASSIVE", 0); }

// Harmless if a second file of the same program includes this too: a set value is kept.
[[gnu::section(".preinit_array"), gnu::used]] static void (*const kPreinit)(int, char**, char**) = &passive_wait_policy;

}  // namespace mopt::exec::openmp_env
