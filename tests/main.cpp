// The tests run with the BLAS kernels the satcap command uses (see select_blas_kernels).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "satcap/runtime.h"

int main(int argc, char* argv[]) {
  satcap::select_blas_kernels();
  return Catch::Session().run(argc, argv);
}
