// The tests run with the BLAS kernels and the allocator the satcap command uses (see
// select_blas_kernels and tune_allocator).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "satcap/runtime/runtime.h"

int main(int argc, char* argv[]) {
  satcap::select_blas_kernels();
  satcap::tune_allocator();
  return Catch::Session().run(argc, argv);
}
