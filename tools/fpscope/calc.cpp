// fpscope calc: batch arithmetic for verification. One case per input line, the operands as hex
// codes; one output line per case, the result's code (and with --flags the IEEE flags).
#include <cstdio>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "fpscope/arith.hpp"
#include "fpscope/arith_bulk.hpp"

namespace fpscope::cli {
namespace {

struct calc_options {
  conversion_options conv;
  std::string op_name;
  bool flags = false;
};

// A hex code ("3c00" or "0x3C00") that fits in the format, else an error naming the line.
std::uint32_t parse_code(const std::string& tok, const format& f, std::uint64_t line) {
  std::size_t i = tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X') ? 2 : 0;
  if (i == tok.size() || tok.size() - i > 8)
    throw std::runtime_error(fmt::format("line {}: '{}' is not a hex code", line, tok));
  std::uint32_t v = 0;
  for (; i < tok.size(); ++i) {
    const char c = tok[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) throw std::runtime_error(fmt::format("line {}: '{}' is not a hex code", line, tok));
    v = v << 4 | std::uint32_t(d);
  }
  if (v & ~f.mask())
    throw std::runtime_error(fmt::format("line {}: code {} does not fit in {} ({} bits)", line, tok, f.name, f.bits));
  return v;
}

int run(calc_options& o) {
  resolve(o.conv);
  const format& f = o.conv.fmt;
  const policy& p = o.conv.pol;
  const auto* spec = &op_table[0];
  for (const auto& s : op_table)
    if (o.op_name == s.name) spec = &s;
  std::ios::sync_with_stdio(false);
  // Every line is read and checked before anything is written, so that a malformed line late
  // in the input leaves no partial output; the operands then go through the bulk API in one
  // call (flags come from the scalar API, one case at a time).
  std::vector<std::uint32_t> v[3];
  std::string text;
  std::uint64_t line = 0;
  while (std::getline(std::cin, text)) {
    ++line;
    int n = 0;
    std::size_t pos = 0;
    while (true) {
      pos = text.find_first_not_of(" \t\r", pos);
      if (pos == std::string::npos) break;
      const std::size_t end = text.find_first_of(" \t\r", pos);
      const std::string tok = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      if (n == spec->arity)
        throw std::runtime_error(fmt::format("line {}: {} takes {} operand{}, found more", line, spec->name,
                                             spec->arity, spec->arity == 1 ? "" : "s"));
      v[n++].push_back(parse_code(tok, f, line));
      if (end == std::string::npos) break;
      pos = end;
    }
    if (n != spec->arity)
      throw std::runtime_error(fmt::format("line {}: {} takes {} operand{}, found {}", line, spec->name, spec->arity,
                                           spec->arity == 1 ? "" : "s", n));
  }
  if (std::cin.bad()) throw std::runtime_error("reading standard input failed");
  const std::size_t cases = v[0].size();
  for (auto& w : v) w.resize(cases, 0);  // unused operands: zeros
  std::vector<std::uint32_t> r(cases);
  std::vector<std::uint8_t> fl(o.flags ? cases : 0);
  if (o.flags) {
    for (std::size_t i = 0; i < cases; ++i) {
      unsigned flags = 0;
      r[i] = apply(spec->o, v[0][i], v[1][i], v[2][i], f, p, i, &flags);
      fl[i] = static_cast<std::uint8_t>(flags);
    }
  } else {
    const auto bulk = [&](auto word) {
      using W = decltype(word);
      std::vector<W> a(v[0].begin(), v[0].end()), b(v[1].begin(), v[1].end()), c(v[2].begin(), v[2].end()), out(cases);
      apply<W>(spec->o, a, b, c, out, f, p);
      r.assign(out.begin(), out.end());
    };
    switch (f.storage_bytes()) {
      case 1: bulk(std::uint8_t{}); break;
      case 2: bulk(std::uint16_t{}); break;
      default: bulk(std::uint32_t{}); break;
    }
  }
  const int width = (f.bits + 3) / 4;
  std::string out;
  for (std::size_t i = 0; i < cases; ++i) {
    out += fmt::format("{:0{}x}", r[i], width);
    if (o.flags) out += fmt::format(" {:02x}", fl[i]);
    out += '\n';
    if (out.size() >= (1u << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return exit_ok;  // main's printing() flushes stdout and reports a failed write
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<calc_options>();
  auto* sub = app.add_subcommand("calc", "batch arithmetic on hex codes from stdin, one case per line");
  add_conversion_options(*sub, o->conv, "-f,--format", false);
  std::string names;
  std::vector<std::string> known;
  for (const auto& s : op_table) {
    names += std::string(names.empty() ? "" : "|") + s.name;
    known.emplace_back(s.name);
  }
  sub->add_option("-o,--op", o->op_name, "operation: " + names)->required()->check(CLI::IsMember(known));
  sub->add_flag("--flags", o->flags,
                "append the IEEE flags as a two-digit hex mask: 01 inexact, 02 underflow,\n"
                "04 overflow, 08 infinite (division by zero), 10 invalid");
  sub->footer(
      "Each input line holds the operands as hex codes of the format (\"3c00\" or \"0x3c00\"),\n"
      "separated by spaces: one for sqrt, three for fma (a*b+c), two otherwise. Each output\n"
      "line is the result's code, in as many hex digits as the format needs. The result is the\n"
      "exact result rounded once; NaNs follow the profile (ieee: the first NaN operand,\n"
      "quieted; cuda: canonical). min/max are IEEE 754-2008 minNum/maxNum. Stochastic\n"
      "rounding draws case i (from 0) from (--seed, i). A malformed line stops the run with an\n"
      "error naming it (exit status 1) before any output is written.\n"
      "\n"
      "Examples:\n"
      "  echo '3c00 3c00' | fpscope calc -f fp16 -o add              # 1 + 1 = 4000\n"
      "  printf '7bff 3c00\\n0001 3800\\n' | fpscope calc -f fp16 -o mul --flags\n"
      "  echo '40 38 30' | fpscope calc -f e4m3 -o fma --rounding rtz --profile cuda");
  return [o] { return run(*o); };
}

const registrar reg{"calc", 40, &setup};

}  // namespace
}  // namespace fpscope::cli
