// recforge: the command-line tool. Each verb is usable on its own; errors print one line.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/fs.h"

int main(int argc, char** argv) {
  recforge::ensure_blas_kernels(argv);
  // INT and TERM remove unfinished run directories (and other registered paths), then exit
  // with 128 + the signal number.
  recforge::install_interrupt_cleanup();
  CLI::App app{"recforge: train recommendation embedding models and serve candidates from them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("recforge ") + RECFORGE_VERSION);
  recforge::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return recforge::cli::run_selected(app);
  } catch (const recforge::Error& e) {
    std::fprintf(stderr, "recforge: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "recforge: internal error: %s\n", e.what());
    return 3;
  }
}
