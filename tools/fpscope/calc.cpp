// fpscope calc: batch arithmetic for verification. One case per input line, the operands as hex
// codes; one output line per case, the result's code (and with --flags the IEEE flags).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <fmt/format.h>
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

// The longest input line read: three operands of any sensible spelling fit many times over; a
// longer line (a 1 GiB one cost 4 GB) is an error naming it, never buffered whole.
constexpr std::size_t max_line = 4096;
// Cases computed and written at once: output streams in batches this size (and whenever the
// input pauses), never held whole.
constexpr std::size_t batch_cases = std::size_t{1} << 16;

// A hex code ("3c00", "0x3C00", zero-padded to any length) that fits in the format, else an
// error naming the line (the token quoted: control characters and NUL shown as '?', shortened).
std::uint32_t parse_code(std::string_view tok, const format& f, std::uint64_t line) {
  std::size_t i = tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X') ? 2 : 0;
  if (i == tok.size()) throw std::runtime_error(fmt::format("line {}: {} is not a hex code", line, quoted(tok)));
  std::uint64_t v = 0;
  for (; i < tok.size(); ++i) {
    const char c = tok[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) throw std::runtime_error(fmt::format("line {}: {} is not a hex code", line, quoted(tok)));
    if (v >> 32)  // wider than any format already: the rest only needs to be hex
      continue;
    v = v << 4 | std::uint64_t(d);
  }
  if (v & ~std::uint64_t(f.mask()))
    throw std::runtime_error(fmt::format("line {}: code {} does not fit in {} ({} bits)", line, quoted(tok), f.name,
                                         f.bits));
  return std::uint32_t(v);
}

// Standard input, line by line, through a fixed buffer: lines longer than max_line are errors.
class line_reader {
 public:
  // The next line (without its '\n'; a last line without one counts), or nullopt at the end.
  // `pause` runs before a read that may block, so what is pending goes out first.
  template <class Pause>
  std::optional<std::string_view> next(std::uint64_t line, Pause&& pause) {
    while (true) {
      if (const auto nl = std::find(buf_.begin() + long(pos_), buf_.begin() + long(end_), '\n');
          nl != buf_.begin() + long(end_)) {
        const std::string_view l(buf_.data() + pos_, std::size_t(nl - buf_.begin()) - pos_);
        pos_ += l.size() + 1;
        return l;
      }
      if (end_ - pos_ > max_line)
        throw std::runtime_error(fmt::format("line {}: longer than {} bytes", line, max_line));
      if (eof_) {
        if (pos_ == end_) return std::nullopt;
        const std::string_view l(buf_.data() + pos_, end_ - pos_);
        pos_ = end_;
        return l;
      }
      std::copy(buf_.begin() + long(pos_), buf_.begin() + long(end_), buf_.begin());
      end_ -= pos_, pos_ = 0;
      pause();
      const ssize_t got = ::read(STDIN_FILENO, buf_.data() + end_, buf_.size() - end_);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw std::runtime_error(std::string("reading standard input failed: ") + std::strerror(errno));
      if (got == 0) eof_ = true;
      end_ += std::size_t(got);
    }
  }

 private:
  std::vector<char> buf_ = std::vector<char>(std::size_t{1} << 16);
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
};

int run(calc_options& o) {
  resolve(o.conv);
  const format& f = o.conv.fmt;
  const policy& p = o.conv.pol;
  const auto* spec = &op_table[0];
  for (const auto& s : op_table)
    if (o.op_name == s.name) spec = &s;
  // Cases are read and checked a batch at a time, then go through the bulk API in one call
  // (flags come from the scalar API, one case at a time) and out: memory is one batch, and a
  // malformed line stops the run after the results of the batches before it.
  std::vector<std::uint32_t> v[3];
  std::uint64_t line = 0, done = 0;
  const int width = (f.bits + 3) / 4;
  std::string out;
  const auto flush = [&] {
    const std::size_t cases = v[0].size();
    if (cases == 0) return;
    std::vector<std::uint32_t> r(cases);
    std::vector<std::uint8_t> fl(o.flags ? cases : 0);
    if (o.flags) {
      for (std::size_t i = 0; i < cases; ++i) {
        unsigned flags = 0;
        r[i] = apply(spec->o, v[0][i], v[1][i], v[2][i], f, p, done + i, &flags);
        fl[i] = static_cast<std::uint8_t>(flags);
      }
    } else {
      bulk_options bo;
      bo.first_index = done;  // stochastic rounding draws case i from (--seed, i), whatever the batches
      const auto bulk = [&](auto word) {
        using W = decltype(word);
        std::vector<W> a(v[0].begin(), v[0].end()), b(v[1].begin(), v[1].end()), c(v[2].begin(), v[2].end()),
            res(cases);
        apply<W>(spec->o, a, b, c, res, f, p, bo);
        r.assign(res.begin(), res.end());
      };
      switch (f.storage_bytes()) {
        case 1: bulk(std::uint8_t{}); break;
        case 2: bulk(std::uint16_t{}); break;
        default: bulk(std::uint32_t{}); break;
      }
    }
    out.clear();
    for (std::size_t i = 0; i < cases; ++i) {
      fmt::format_to(std::back_inserter(out), "{:0{}x}", r[i], width);
      if (o.flags) fmt::format_to(std::back_inserter(out), " {:02x}", fl[i]);
      out += '\n';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    flush_stdout();  // streamed: a failed write ends the run here, as printing() reports it
    done += cases;
    for (auto& w : v) w.clear();
  };
  line_reader in;
  while (const auto text = in.next(line + 1, flush)) {
    ++line;
    int n = 0;
    std::size_t pos = 0;
    while (true) {
      pos = text->find_first_not_of(" \t\r", pos);
      if (pos == std::string_view::npos) break;
      const std::size_t end = text->find_first_of(" \t\r", pos);
      const std::string_view tok = text->substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
      if (n == spec->arity)
        throw std::runtime_error(fmt::format("line {}: {} takes {} operand{}, found more", line, spec->name,
                                             spec->arity, spec->arity == 1 ? "" : "s"));
      v[n++].push_back(parse_code(tok, f, line));
      if (end == std::string_view::npos) break;
      pos = end;
    }
    if (n != spec->arity)
      throw std::runtime_error(fmt::format("line {}: {} takes {} operand{}, found {}", line, spec->name, spec->arity,
                                           spec->arity == 1 ? "" : "s", n));
    for (int k = n; k < 3; ++k) v[k].push_back(0);  // unused operands: zeros
    if (v[0].size() == batch_cases) flush();
  }
  flush();
  return exit_ok;
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
      "rounding draws case i (from 0) from (--seed, i). Results stream out in batches (and\n"
      "whenever the input pauses). A malformed line, or one longer than 4096 bytes, stops the\n"
      "run with an error naming it (exit status 1); results of earlier lines may be out.\n"
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
