// recforge: the command-line tool. Each verb is usable on its own; errors print one line.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli/commands.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/fs.h"
#include "dist/comm.h"
#include "dist/errors.h"

namespace {

std::string g_verb = "recforge";  // "recforge train", ... once parsed, for the out-of-memory line

// Ends a failed run without exit-time destructors. A normal exit runs OpenBLAS's shutdown,
// which joins its thread pool; when memory ran out (ulimit -v), a pool thread may be retrying a
// buffer allocation forever (OpenBLAS never gives up), and the process printed its error and
// then never ended. Every run's own cleanup (staged run directories, the log file) has happened
// by then, during unwinding.
[[noreturn]] void exit_now(int status) {
  std::fflush(nullptr);
  std::_Exit(status);
}

[[noreturn]] void exit_out_of_memory() {
  std::fprintf(stderr,
               "recforge: error: out of memory while running %s; lower model.factors, "
               "train.threads or the data size, or raise the memory limit (ulimit -v)\n",
               g_verb.c_str());
  exit_now(1);
}

bool g_main_returned = false;  // set when main returns normally: exit() is then ours

// exit() called by a library in the middle of a run (libgomp's "Thread creation failed" when
// memory is short calls exit(1)) would run OpenBLAS's shutdown and hang as above, and leave the
// run's staging directory: remove the registered paths, say so, and end now.
void on_foreign_exit() {
  if (g_main_returned) return;
  recforge::run_interrupt_cleanup();
  std::fprintf(stderr,
               "recforge: error: out of memory or threads while running %s (a library gave up: "
               "see the line above); lower model.factors, train.threads or the data size, or "
               "raise the memory limit (ulimit -v)\n",
               g_verb.c_str());
  exit_now(1);
}

// A bad_alloc inside an OpenMP region cannot reach main's catch: it calls std::terminate.
void on_terminate() {
  if (const std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
      exit_out_of_memory();
    } catch (...) {
    }
  }
  std::abort();
}

}  // namespace

int main(int argc, char** argv) {
  recforge::ensure_blas_kernels(argv);
  std::set_terminate(on_terminate);
  // INT and TERM remove unfinished run directories (and other registered paths), then exit
  // with 128 + the signal number.
  recforge::install_interrupt_cleanup();
  std::atexit(on_foreign_exit);
  CLI::App app{"recforge: train recommendation embedding models and serve candidates from them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("recforge ") + RECFORGE_VERSION);
  recforge::cli::register_commands(app);
  // A first word that is no command (a typo, `recforge validate`) was "A subcommand is
  // required": say which word, and what the commands are.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "recforge: error: unknown command '%s'; the commands are %s (recforge "
                   "--help)\n", argv[1], names.c_str());
      exit_now(static_cast<int>(CLI::ExitCodes::RequiredError));  // CLI11's status, as before
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    exit_now(app.exit(e));  // --help, --version, syntax errors: no exit-time joins either
  }
  for (const auto* sub : app.get_subcommands()) g_verb = "recforge " + sub->get_name();
  // One process of an mpirun job (`mpirun -np P recforge train CONFIG`): MPI starts here, after
  // the re-execution of ensure_blas_kernels and the parsing of the command line.
  try {
    recforge::dist::init(&argc, &argv);
  } catch (const recforge::Error& e) {
    std::fprintf(stderr, "recforge: error: %s\n", e.what());
    exit_now(1);
  }
  const recforge::dist::Comm& world = recforge::dist::world();
  if (world.distributed()) recforge::set_interrupt_process(world.rank(), world.size());
  try {
    if (world.distributed() && g_verb != "recforge train")
      throw recforge::dist::CollectiveError(
          g_verb + " runs as one process; only `recforge train` runs across the processes of "
                   "mpirun (mpirun -np P recforge train CONFIG)");
    int rc = recforge::cli::run_selected(app);
    // What a command printed (recommendations, JSON) is only written when flushed: a full disk
    // or a closed descriptor shows here, and a truncated answer must not exit 0.
    errno = 0;
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      const int err = errno;
      std::fprintf(stderr, "recforge: error: %s: cannot write its output to standard output: %s\n",
                   g_verb.c_str(), err != 0 ? std::strerror(err) : "write error");
      if (rc == 0) rc = 1;
    }
    recforge::dist::finalize();
    g_main_returned = true;
    return rc;
  } catch (const recforge::dist::CollectiveError& e) {
    // Raised by every rank alike: said once.
    if (world.rank() == 0) std::fprintf(stderr, "recforge: error: %s\n", e.what());
    recforge::dist::finalize();
    exit_now(1);
  } catch (const recforge::Error& e) {
    if (world.distributed()) {  // this rank's alone: the others may wait for it, so end the job
      std::fprintf(stderr, "recforge: error: process %d of %d: %s\n", world.rank(), world.size(),
                   e.what());
      std::fflush(nullptr);
      recforge::dist::abort(1);
    }
    std::fprintf(stderr, "recforge: error: %s\n", e.what());
    exit_now(1);
  } catch (const std::bad_alloc&) {
    if (world.distributed()) {
      std::fprintf(stderr, "recforge: error: process %d of %d ran out of memory while running %s\n",
                   world.rank(), world.size(), g_verb.c_str());
      std::fflush(nullptr);
      recforge::dist::abort(1);
    }
    exit_out_of_memory();
  } catch (const std::exception& e) {
    if (world.distributed()) {
      std::fprintf(stderr, "recforge: internal error: process %d of %d: %s\n", world.rank(),
                   world.size(), e.what());
      std::fflush(nullptr);
      recforge::dist::abort(3);
    }
    std::fprintf(stderr, "recforge: internal error: %s\n", e.what());
    exit_now(3);
  }
}
