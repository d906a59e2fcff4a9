// Format tags for the templated test cases: one type per built-in format, so that Catch names
// every case "<what> - <format>" and ctest can run (and report) each format on its own.
#pragma once

#include "fpscope/format.hpp"

#define FPSCOPE_UNIT_FORMAT_TAG(n)                                   \
  struct n {                                                         \
    static constexpr fpscope::format_id id = fpscope::format_id::n; \
  };
FPSCOPE_UNIT_FORMAT_TAG(fp16)
FPSCOPE_UNIT_FORMAT_TAG(bf16)
FPSCOPE_UNIT_FORMAT_TAG(tf32)
FPSCOPE_UNIT_FORMAT_TAG(e4m3)
FPSCOPE_UNIT_FORMAT_TAG(e5m2)
FPSCOPE_UNIT_FORMAT_TAG(e4m3fnuz)
FPSCOPE_UNIT_FORMAT_TAG(e5m2fnuz)
FPSCOPE_UNIT_FORMAT_TAG(e2m3)
FPSCOPE_UNIT_FORMAT_TAG(e3m2)
FPSCOPE_UNIT_FORMAT_TAG(e2m1)
FPSCOPE_UNIT_FORMAT_TAG(e8m0)
#undef FPSCOPE_UNIT_FORMAT_TAG

// Every built-in format. A format added to the library without a tag here fails to compile.
#define FPSCOPE_UNIT_FORMATS fp16, bf16, tf32, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m3, e3m2, e2m1, e8m0
static_assert(fpscope::builtin_count == 11, "add the new format to FPSCOPE_UNIT_FORMATS");
