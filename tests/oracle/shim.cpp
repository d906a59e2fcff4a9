// C ABI over fpscope's encoders for the ml_dtypes oracle (test_ml_dtypes.py, via ctypes).
// Formats are data: a built-in one by name, or any format given by its parameters.
// Every function returns 0 on success and a negative number on a bad argument.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fpscope/convert.hpp"

#define SHIM_API extern "C" __attribute__((visibility("default")))

namespace {

bool parse_specials(const char* s, fpscope::special& out) {
  const std::string_view v(s ? s : "");
  if (v == "ieee") out = fpscope::special::ieee;
  else if (v == "fn") out = fpscope::special::fn;
  else if (v == "fnuz") out = fpscope::special::fnuz;
  else if (v == "finite") out = fpscope::special::finite;
  else if (v == "e8m0") out = fpscope::special::e8m0;
  else return false;
  return true;
}

template <class Word>
void run(const fpscope::format& f, const fpscope::policy& p, const float* in, void* out, std::size_t n,
         int scalar) {
  auto* o = static_cast<Word*>(out);
  if (scalar) {
    for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<Word>(fpscope::encode(in[i], f, p));
  } else {
    fpscope::encode(std::span<const float>(in, n), std::span<Word>(o, n), f, p);
  }
}

int encode(const fpscope::format& f, const char* profile, const char* rounding, const float* in, void* out,
           std::size_t n, int scalar) {
  const auto pr = fpscope::find_profile(profile ? profile : "");
  const auto rm = fpscope::find_rounding(rounding ? rounding : "");
  if (!pr || !rm) return -2;
  fpscope::policy p = fpscope::profile_policy(*pr, f);
  p.round = *rm;
  switch (f.storage_bytes()) {
    case 1: run<std::uint8_t>(f, p, in, out, n, scalar); break;
    case 2: run<std::uint16_t>(f, p, in, out, n, scalar); break;
    default: run<std::uint32_t>(f, p, in, out, n, scalar); break;
  }
  return 0;
}

}  // namespace

/// Parameters of a built-in format: bits, exp_bits, man_bits, bias, subnormals, storage bytes;
/// `specials` receives its style name ("ieee", "fn", ...; at least 8 bytes).
SHIM_API int fpscope_oracle_format_info(const char* name, int* params, char* specials) {
  const auto id = fpscope::find_format(name ? name : "");
  if (!id) return -1;
  const auto f = fpscope::builtin(*id);
  params[0] = f.bits;
  params[1] = f.exp_bits;
  params[2] = f.man_bits;
  params[3] = f.bias;
  params[4] = f.subnormals ? 1 : 0;
  params[5] = f.storage_bytes();
  const char* names[] = {"ieee", "fn", "fnuz", "finite", "e8m0"};
  const char* s = names[static_cast<int>(f.specials)];
  int i = 0;
  for (; s[i] && i < 7; ++i) specials[i] = s[i];
  specials[i] = 0;
  return 0;
}

/// float32 -> codes of the built-in format `name` under `profile` and `rounding` (fpscope's
/// names). `out` holds n words of the format's storage width. scalar != 0: the scalar encoder
/// element by element, else the bulk encoder.
SHIM_API int fpscope_oracle_encode_builtin(const char* name, const char* profile, const char* rounding,
                                           const float* in, void* out, std::size_t n, int scalar) {
  const auto id = fpscope::find_format(name ? name : "");
  if (!id) return -1;
  return encode(fpscope::builtin(*id), profile, rounding, in, out, n, scalar);
}

/// As fpscope_oracle_encode_builtin, for the format with these parameters.
SHIM_API int fpscope_oracle_encode_custom(int bits, int exp_bits, int man_bits, int bias, const char* specials,
                                          int subnormals, const char* profile, const char* rounding,
                                          const float* in, void* out, std::size_t n, int scalar) {
  fpscope::special sp{};
  if (!parse_specials(specials, sp) || bits < 2 || bits > 16 || exp_bits < 1 || man_bits < 0 ||
      exp_bits + man_bits + (sp == fpscope::special::e8m0 ? 0 : 1) != bits)
    return -1;
  const fpscope::format f{"custom", bits, exp_bits, man_bits, bias, sp, subnormals != 0};
  return encode(f, profile, rounding, in, out, n, scalar);
}
