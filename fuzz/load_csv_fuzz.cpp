// Fuzz target: the loader of delimited text (CSV, TSV, spaces) in src/data/load.cpp, from a
// file (three option bytes, then the file; see load_options.h), parsed, mapped and cleaned as
// `recforge train` does, cache off.
#include "load_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return recforge::fuzz::fuzz_load(data, size, recforge::data::Format::kDelimited);
}
