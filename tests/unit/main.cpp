// The unit suite's main: Catch2 with a fixed random seed (tests draw their own randomness from
// seeded generators too, so every run checks the same inputs).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  Catch::Session session;
  session.configData().rngSeed = 0x5EED;  // --rng-seed on the command line still overrides
  if (const int rc = session.applyCommandLine(argc, argv)) return rc;
  return session.run();
}
