// .npy reader/writer (round trips, every error) and the exact decimal helpers of the CLI.
#define CATCH_CONFIG_MAIN
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "fpscope/exact.hpp"
#include "fpscope/npy.hpp"
#include "test_files.hpp"

using namespace fpscope;
using namespace fpscope::test;

namespace {

// A raw .npy: magic, version, little-endian header length, header text, then data bytes.
std::string raw_npy(int major, const std::string& dict, std::size_t data_bytes, int minor = 0) {
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const std::size_t prefix = 8 + len_bytes;
  while ((prefix + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string s = "\x93NUMPY";
  s += char(major);
  s += char(minor);
  for (std::size_t i = 0; i < len_bytes; ++i) s += char((header.size() >> (8 * i)) & 0xFF);
  s += header;
  s.append(data_bytes, '\x01');
  return s;
}

// The message of the npy_error that opening `path` throws ("" if none).
std::string open_error(const std::string& path) {
  try {
    npy_reader r(path);
  } catch (const npy_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("npy round trip of every dtype and shape", "[npy]") {
  temp_dir d;
  SECTION("float32 2x3x4") {
    std::vector<float> v(24);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f - 3.0f;
    npy_save(d / "a.npy", npy_dtype::f4, {2, 3, 4}, std::span<const float>(v));
    npy_reader r(d / "a.npy");
    CHECK(r.dtype() == npy_dtype::f4);
    CHECK(r.shape() == std::vector<std::uint64_t>{2, 3, 4});
    CHECK(r.size() == 24);
    CHECK(r.data_offset() % 64 == 0);
    const auto got = r.values<float>();
    CHECK(std::vector<float>(got.begin(), got.end()) == v);
  }
  SECTION("float64, uint8, uint16, uint32, float16 bits") {
    const std::vector<double> f8{1.0, -0.0, 1e300, std::numeric_limits<double>::denorm_min()};
    npy_save(d / "f8.npy", npy_dtype::f8, {4}, std::span<const double>(f8));
    const std::vector<std::uint8_t> u1{0, 1, 255};
    npy_save(d / "u1.npy", npy_dtype::u1, {3}, std::span<const std::uint8_t>(u1));
    const std::vector<std::uint16_t> u2{0x3c00, 0x7e00, 0xffff};
    npy_save(d / "u2.npy", npy_dtype::u2, {1, 3}, std::span<const std::uint16_t>(u2));
    npy_save(d / "f2.npy", npy_dtype::f2, {3, 1}, std::span<const std::uint16_t>(u2));
    const std::vector<std::uint32_t> u4{0, 0x7ffff, 0xffffffffu};
    npy_save(d / "u4.npy", npy_dtype::u4, {3}, std::span<const std::uint32_t>(u4));

    npy_reader rd(d / "f8.npy");
    const auto r8 = rd.values<double>();
    CHECK(std::memcmp(r8.data(), f8.data(), sizeof(double) * 4) == 0);
    npy_reader r1(d / "u1.npy");
    CHECK(npy_descr(r1.dtype()) == "|u1");
    CHECK(r1.values<std::uint8_t>()[2] == 255);
    npy_reader r2(d / "u2.npy");
    CHECK(r2.shape() == std::vector<std::uint64_t>{1, 3});
    CHECK(r2.values<std::uint16_t>()[1] == 0x7e00);
    npy_reader rh(d / "f2.npy");
    CHECK(rh.dtype() == npy_dtype::f2);
    CHECK(rh.values<std::uint16_t>()[0] == 0x3c00);
    CHECK(npy_reader(d / "u4.npy").values<std::uint32_t>()[2] == 0xffffffffu);
    CHECK_THROWS_AS(rh.values<float>(), std::invalid_argument);
  }
  SECTION("scalar and empty arrays") {
    const std::vector<float> one{42.0f};
    npy_save(d / "s.npy", npy_dtype::f4, {}, std::span<const float>(one));
    npy_reader s(d / "s.npy");
    CHECK(s.shape().empty());
    CHECK(s.size() == 1);
    CHECK(s.values<float>()[0] == 42.0f);
    npy_save(d / "e.npy", npy_dtype::f4, {0, 3}, std::span<const float>());
    npy_reader e(d / "e.npy");
    CHECK(e.size() == 0);
    CHECK(e.shape() == std::vector<std::uint64_t>{0, 3});
  }
  SECTION("versions 2.0 and 3.0, extra trailing bytes, Python 2 longs") {
    write_file(d / "v2.npy", raw_npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8));
    write_file(d / "v3.npy", raw_npy(3, "{\"descr\": \"<u2\", \"fortran_order\": False, \"shape\": (3, ), }", 6));
    write_file(d / "long.npy", raw_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 3L)}", 7));
    npy_reader v2(d / "v2.npy");
    CHECK(v2.version() == 2);
    CHECK(v2.size() == 2);
    npy_reader v3(d / "v3.npy");
    CHECK(v3.version() == 3);
    CHECK(v3.dtype() == npy_dtype::u2);
    CHECK(npy_reader(d / "long.npy").size() == 6);
  }
  SECTION("streamed writes in pieces and release()") {
    npy_writer w(d / "p.npy", npy_dtype::u2, {1000, 1000});
    std::vector<std::uint16_t> chunk(1000);
    for (int i = 0; i < 1000; ++i) {
      for (int j = 0; j < 1000; ++j) chunk[std::size_t(j)] = std::uint16_t(i + j);
      w.write(std::span<const std::uint16_t>(chunk));
    }
    w.commit();
    npy_reader r(d / "p.npy");
    const auto v = r.values<std::uint16_t>();
    CHECK(v[999 * 1000 + 999] == std::uint16_t(1998));
    r.release(0, 500000);  // the pages come back on demand
    CHECK(v[1] == 1);
    CHECK(d.names() == std::vector<std::string>{"p.npy"});
  }
}

TEST_CASE("npy writer leaves no partial output", "[npy]") {
  temp_dir d;
  SECTION("destroyed without commit") {
    {
      npy_writer w(d / "x.npy", npy_dtype::f4, {4});
      const float v[2] = {1, 2};
      w.write(v, sizeof v);
      CHECK(d.names().empty());  // an unnamed file until commit
    }
    CHECK(d.names().empty());
  }
  SECTION("commit with missing elements is refused, then nothing remains") {
    {
      npy_writer w(d / "x.npy", npy_dtype::u1, {4});
      const std::uint8_t v[2] = {1, 2};
      w.write(v, 2);
      CHECK_THROWS(w.commit());
    }
    CHECK(d.names().empty());
  }
  SECTION("too much data is refused") {
    npy_writer w(d / "x.npy", npy_dtype::u1, {1});
    const std::uint8_t v[2] = {1, 2};
    CHECK_THROWS(w.write(v, 2));
  }
  SECTION("an existing file is replaced only on commit") {
    write_file(d / "x.npy", "old");
    {
      npy_writer w(d / "x.npy", npy_dtype::u1, {1});
    }
    std::ifstream f(d / "x.npy");
    std::string s;
    f >> s;
    CHECK(s == "old");
  }
  SECTION("writing over an input is refused") {
    npy_save(d / "in.npy", npy_dtype::u1, {1}, std::span<const std::uint8_t>(std::vector<std::uint8_t>{7}));
    output_options opt;
    opt.inputs = {d / "in.npy"};
    CHECK_THROWS_WITH(npy_writer(d / "./in.npy", npy_dtype::u1, {1}, opt),
                      Catch::Contains("is the input file") && Catch::Contains(d / "./in.npy"));
    CHECK(npy_reader(d / "in.npy").values<std::uint8_t>()[0] == 7);
    CHECK_THROWS_AS(npy_writer(d / "in.npy", npy_dtype::u1, {1}, opt), npy_error);
  }
  SECTION("unwritable paths are one-line errors naming the path") {
    for (const std::string& p : {d / "no/such/dir/x.npy", d.path.string()}) {
      try {
        npy_writer w(p, npy_dtype::u1, {1});
        FAIL("no error for " << p);
      } catch (const npy_error& e) {
        const std::string m = e.what();
        CHECK(one_line(m));
        CHECK(m.find(p) != std::string::npos);
        CHECK(m.find("cannot write") != std::string::npos);
      }
    }
    write_file(d / "file", "x");
    CHECK_THROWS_AS(npy_writer(d / "file/x.npy", npy_dtype::u1, {1}), npy_error);
  }
}

TEST_CASE("npy reader errors are one line naming the file and the problem", "[npy]") {
  temp_dir d;
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  struct bad {
    std::string name, bytes, expect;
  };
  const std::vector<bad> cases{
      {"empty.npy", "", "not an .npy file"},
      {"text.npy", "hello, world\n", "not an .npy file (bad magic)"},
      {"short.npy", "\x93NUM", "not an .npy file (bad magic)"},
      {"v4.npy", raw_npy(4, ok_dict, 8), "unsupported .npy format version 4.0"},
      {"v1_1.npy", raw_npy(1, ok_dict, 8, 1), "unsupported .npy format version 1.1"},
      {"nodict.npy", raw_npy(1, "[1, 2]", 8), "malformed .npy header"},
      {"garbage.npy", raw_npy(1, "{'descr': <f4}", 8), "malformed .npy header"},
      {"unterminated.npy", raw_npy(1, "{'descr': '<f4", 8), "malformed .npy header"},
      {"nokey.npy", raw_npy(1, "{'descr': '<f4', 'shape': (2,)}", 8), "missing key 'fortran_order'"},
      {"extrakey.npy", raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8),
       "unexpected key 'x'"},
      {"badshape.npy", raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',)}", 8),
       "shape is not a tuple of integers"},
      {"hugeshape.npy",
       raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16)}", 8),
       "shape too large"},
      {"headerlen.npy", std::string("\x93NUMPY\x01\x00\xff\x7f{}", 12), "malformed .npy header"},
      {"big.npy", raw_npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8),
       "big-endian dtype '>f4'"},
      {"fortran.npy", raw_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1), }", 8),
       "Fortran-order"},
      {"i4.npy", raw_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 8),
       "unsupported dtype '<i4'"},
      {"c8.npy", raw_npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16),
       "unsupported dtype '<c8'"},
      {"struct.npy", raw_npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8),
       "unsupported dtype"},
      {"trunc.npy", raw_npy(1, ok_dict, 5), "truncated data: expected 8 bytes, found 5"},
      {"trunc0.npy", raw_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 0),
       "truncated data: expected 96 bytes, found 0"},
  };
  for (const auto& c : cases) {
    write_file(d / c.name, c.bytes);
    const std::string m = open_error(d / c.name);
    INFO(c.name << ": " << m);
    CHECK(one_line(m));
    CHECK(m.find(d / c.name) == 0);
    CHECK(m.find(c.expect) != std::string::npos);
  }
  const std::string missing = open_error(d / "missing.npy");
  CHECK(missing.find("No such file or directory") != std::string::npos);
  CHECK(open_error(d.path.string()).find("is a directory") != std::string::npos);
  // A one-byte type reads in any byte order.
  write_file(d / "bu1.npy", raw_npy(1, "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }", 2));
  CHECK(open_error(d / "bu1.npy").empty());
}

TEST_CASE("exact decimal expansions", "[exact]") {
  CHECK(exact_decimal(0.1) == "0.1000000000000000055511151231257827021181583404541015625");
  CHECK(exact_decimal(464.0) == "464");
  CHECK(exact_decimal(-1.5) == "-1.5");
  CHECK(exact_decimal(0.0) == "0");
  CHECK(exact_decimal(-0.0) == "-0");
  CHECK(exact_decimal(std::ldexp(1.0, -24)) == "0.000000059604644775390625");
  CHECK(exact_decimal(1e22) == "10000000000000000000000");
  CHECK(exact_decimal(std::ldexp(1.0, 100)) == "1267650600228229401496703205376");
  CHECK(exact_decimal(INFINITY) == "inf");
  CHECK(exact_decimal(-INFINITY) == "-inf");
  CHECK(exact_decimal(NAN) == "nan");
  const std::string tiny = exact_decimal(std::numeric_limits<double>::denorm_min());
  CHECK(tiny.size() == 2 + 1074);  // "0." and 1074 places: 2^-1074 ends in ...625
  CHECK(tiny.substr(tiny.size() - 3) == "625");
  CHECK(exact_decimal(std::numeric_limits<double>::max()).size() == 309);

  CHECK(exact_difference(448.0, 464.0) == "-16");
  CHECK(exact_difference(0.1, 0.1) == "0");
  CHECK(exact_difference(1.0, 0.1) == "0.8999999999999999944488848768742172978818416595458984375");

  CHECK(relative_error(448.0, 464.0) == "-3.4482758620689655e-2");
  CHECK(relative_error(1.0, 3.0, 5) == "-6.6667e-1");
  CHECK(relative_error(2.0, 1.0) == "1");
  CHECK(relative_error(1.0, 1.0) == "0");
  CHECK(relative_error(1.0, 0.0) == std::nullopt);
  CHECK(relative_error(INFINITY, 1.0) == std::nullopt);
  CHECK(relative_error(1.0 + std::ldexp(1.0, -52), 1.0, 3) == "2.22e-16");
  CHECK(relative_error(0.95, 1.0, 1) == "-5e-2");  // 0.95 is below .95: no tie
  CHECK(relative_error(1.25, 1.0, 1) == "2e-1");   // exact tie: to even
  CHECK(relative_error(1.75, 1.0, 1) == "8e-1");

  CHECK(literal_is_exact("0.5", 0.5));
  CHECK(literal_is_exact("-1.5e3", -1500.0));
  CHECK(literal_is_exact("0x1.8p-3", 0.1875));
  CHECK(literal_is_exact("464", 464.0));
  CHECK_FALSE(literal_is_exact("0.1", 0.1));
  CHECK_FALSE(literal_is_exact("1.2e-7", 1.2e-7));
  CHECK(literal_is_exact("-inf", -INFINITY));
  CHECK(literal_is_exact("nan", NAN));
  CHECK_FALSE(literal_is_exact("1e400", INFINITY));
  CHECK_FALSE(literal_is_exact("1e-400", 0.0));
  CHECK(literal_is_exact("0e-400", 0.0));
  CHECK_FALSE(literal_is_exact("0x1.00000000000001p0", 1.0));  // 57 bits: rounded
  CHECK_FALSE(literal_is_exact("abc", 1.0));

  CHECK(product_is_exact(3.0, 0.5, 1.5));
  CHECK_FALSE(product_is_exact(0.1, 3.0, 0.1 * 3.0));
  CHECK_FALSE(product_is_exact(1e300, 1e300, INFINITY));
  CHECK(product_is_exact(0.0, 5.0, 0.0));
}
