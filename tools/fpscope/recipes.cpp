// fpscope recipes: GEMM operands (.npy) under block-scaled recipes side by side (issue 16): per
// operand x recipe the exact class counts, the dequantized operand's SQNR and relative error, and
// the per-block statistics (fpscope/block_quant.hpp computes all of it); a summary naming the
// worst operands per recipe. This file parses options and prints; the numbers are the library's.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli.hpp"
#include "plot.hpp"
#include "plot_recipes.hpp"
#include "fpscope/block_quant.hpp"
#include "fpscope/contain.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/input.hpp"
#include "fpscope/npy.hpp"
#include "fpscope/operand_report.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/report_json.hpp"
#include "fpscope/trace.hpp"
#include "text.hpp"

namespace fpscope::cli {
namespace {

struct recipes_options {
  std::vector<std::string> inputs, recipes;
  std::string role, axis, gemm, plot;  // role "": input
  bool json = false, csv = false;
  int worst = 3;
  double budget = -1;  // --keep-bf16: the lost fraction above which an operand stays in BF16
  long long step = -1;  // a trace's step index (-1: the last with raw values)
};

// One operand: its values as float32 (float64 rounded to nearest, float16 exactly) seen as a
// matrix (product of the leading dimensions) x (last dimension).
struct operand {
  std::string path;
  std::vector<std::uint64_t> shape;
  std::size_t rows = 0, cols = 0;
  std::vector<float> values;
};

operand load(const std::string& path) {
  const npy_reader in(path);
  operand o{path, in.shape(), 0, 0, {}};
  if (in.size() == 0) throw npy_error(fmt::format("{}: recipes needs a non-empty array", path));
  o.cols = o.shape.empty() ? 1 : std::size_t(o.shape.back());
  o.rows = std::size_t(in.size()) / o.cols;
  o.values.resize(in.size());
  switch (in.dtype()) {
    case npy_dtype::f4: std::copy(in.values<float>().begin(), in.values<float>().end(), o.values.begin()); break;
    case npy_dtype::f8:
      for (std::size_t i = 0; i < o.values.size(); ++i) o.values[i] = static_cast<float>(in.values<double>()[i]);
      break;
    case npy_dtype::f2:
      for (std::size_t i = 0; i < o.values.size(); ++i)
        o.values[i] = static_cast<float>(decode(in.values<std::uint16_t>()[i], builtin(format_id::fp16)));
      break;
    default:
      throw npy_error(fmt::format("{}: recipes reads float16, float32 or float64 arrays, not {}", path, npy_type_name(in.dtype())));
  }
  in.check_intact();
  return o;
}

// The tensors of one step of a trace that hold raw values, each an operand "name@step" (read in
// the contained worker: a hostile HDF5 file cannot crash or hang the CLI).
std::vector<operand> load_trace(const std::string& path, long long want) {
  const trace_reader tr(path);
  if (tr.size() == 0) throw trace_error(path + ": the trace holds no complete step");
  std::size_t at = tr.size();
  if (want >= 0) {
    if (std::uint64_t(want) >= tr.size())
      throw usage_error(fmt::format("--step {}: the trace has steps 0 to {}", want, tr.size() - 1));
    at = std::size_t(want);
  } else {
    for (std::size_t i = tr.size(); i-- > 0 && at == tr.size();) {
      const auto st = tr.step(i);
      for (const auto& t : st.tensors)
        if (t.has_values) at = i;
    }
    if (at == tr.size()) throw trace_error(path + ": no step holds raw values (histograms cannot be block-quantized)");
  }
  const trace_step st = tr.step(at);
  std::vector<operand> out;
  for (const auto& t : st.tensors) {
    if (!t.has_values || t.count == 0) continue;
    heartbeat();
    operand o{t.name + "@" + std::to_string(st.step), t.shape, 0, 0, {}};
    o.cols = o.shape.empty() ? 1 : std::max<std::size_t>(std::size_t(o.shape.back()), 1);
    o.rows = std::size_t(t.count) / o.cols;
    o.values.reserve(std::size_t(t.count));
    tr.values(st, t, [&o](std::span<const float> v) {
      heartbeat();
      o.values.insert(o.values.end(), v.begin(), v.end());
    });
    out.push_back(std::move(o));
  }
  if (out.empty()) throw trace_error(fmt::format("{}: step {} holds no raw values", path, st.step));
  return out;
}

struct row {
  std::size_t operand, recipe;
  block_quant_result q;
  double lost() const { return lost_fraction(q.stats); }
};

nlohmann::ordered_json to_json(const row& r, const std::string& spec) {
  nlohmann::ordered_json j;
  j["recipe"] = spec;
  j["describe"] = r.q.describe;
  j["element"] = r.q.element.name;
  j["scale_format"] = r.q.scale_format.name;
  j["block_shape"] = {r.q.block_rows, r.q.block_cols};
  j.update(block_stats_json(r.q.stats));
  j["tensor_scale"] = r.q.tensor_scale;
  return j;
}

// Whether a trace records GEMM operands (@role; docs/trace.md, "GEMM operands"): then every
// operand goes under each GEMM it feeds (run_operands), not one --role for all.
bool records_operands(const std::string& path) {
  const trace_reader tr(path);
  for (std::size_t i = 0; i < tr.size(); ++i) {
    heartbeat();
    for (const auto& t : tr.step(i).tensors)
      if (t.operand && t.operand->role != trace_role::wgrad) return true;
  }
  return false;
}

// The short name of an operand x GEMM: "X fprop", "dY wgrad".
std::string cell_name(trace_role role, std::string_view gemm) {
  const char* r = role == trace_role::input ? "X" : role == trace_role::weight ? "W" : "dY";
  return fmt::format("{} {}", r, gemm);
}

// An SQNR after `lead`, or nothing where none is known (every operand answered from block
// statistics, which do not give it).
std::string db_note(const char* lead, double db) { return std::isnan(db) ? "" : fmt::format("{}{:.1f} dB", lead, db); }

// Whether the columns the table shows of an answer from block statistics are exact (its
// most_vanish_blocks, not shown, is always a bound: docs/recipes.md "Block statistics").
bool shown_exact(const operand_quant& q) {
  const auto& lo = q.stats;
  const auto& hi = q.high;
  return lo.counts.n == hi.counts.n && lo.clipped_blocks == hi.clipped_blocks &&
         lo.any_vanish_blocks == hi.any_vanish_blocks && lo.scale_binades == hi.scale_binades;
}

// fpscope recipes TRACE on a trace with GEMM operands: the library's report (operand_report.hpp)
// printed as a table, CSV or JSON, with the per-layer verdicts.
int run_operands(const recipes_options& o, const std::vector<std::string>& specs) {
  const trace_reader tr(o.inputs.front());
  const operand_report r = report_operands(tr, o.step, specs, [] { heartbeat(); });
  heartbeat_done();
  const operand_verdicts v = judge(r, o.budget);
  const std::size_t nr = specs.size();
  if (!o.plot.empty()) {
    operand_picture pic;
    pic.title = fmt::format("nonzero elements lost per layer and operand x GEMM, step {}", r.step);
    pic.layers = r.layers;
    pic.recipes = specs;
    for (const auto role : {trace_role::input, trace_role::weight, trace_role::grad})
      for (const auto& use : gemms_of(role)) pic.columns.push_back(cell_name(role, use.gemm));
    pic.lost.assign(nr * r.layers.size() * pic.columns.size(), std::nan(""));
    for (const auto& c : r.cells) {
      const std::size_t col = std::size_t(std::find(pic.columns.begin(), pic.columns.end(), cell_name(c.role, c.use.gemm)) -
                                          pic.columns.begin());
      for (std::size_t k = 0; k < nr; ++k)
        pic.lost[(k * r.layers.size() + c.layer) * pic.columns.size() + col] = c.results[k].lost();
    }
    write_operand_plot(o.plot, pic, o.inputs);
  }
  if (o.json) {
    fmt::print("{}\n", json_text(operand_report_json(r, v), 2));
    return exit_ok;
  }
  if (o.csv) {
    fmt::print("layer,tensor,role,gemm,axis,rows,cols,recipe,element,block_rows,block_cols,count,zero,underflow,subnormal,"
               "normal,overflow,nonfinite,lost_fraction,sqnr_db,mean_rel_error,max_rel_error,blocks,clipped_blocks,"
               "any_vanish_blocks,most_vanish_blocks,zero_blocks,nan_scale_blocks,min_scale,max_scale,source,exact\n");
    for (const auto& c : r.cells)
      for (std::size_t k = 0; k < nr; ++k) {
        const auto& q = c.results[k];
        if (!q.answered()) {  // docs/recipes.md: the row names the recipe, its statistics empty
          fmt::print("{},{},{},{},{},{},{},{}{}block_stats,false\n", csv_field(printable(r.layers[c.layer])),
                     csv_field(printable(c.tensor)), name(c.role), c.use.gemm, name(c.use.axis), c.rows, c.cols,
                     csv_field(printable(specs[k])), std::string(23, ','));
          continue;
        }
        const auto& st = q.stats;  // from block statistics: the lower bounds (exact: false says so)
        const auto& n = st.counts;
        fmt::print("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.6g},{:.6g},{:.6g},{:.6g},{},{},{},{},{},{},{:.9g},{:.9g}",
                   csv_field(printable(r.layers[c.layer])), csv_field(printable(c.tensor)), name(c.role), c.use.gemm,
                   name(c.use.axis), c.rows, c.cols, csv_field(printable(specs[k])), q.element, q.block_rows, q.block_cols,
                   n.total(), n[cast_class::zero], n[cast_class::underflow], n[cast_class::subnormal], n[cast_class::normal],
                   n[cast_class::overflow], n[cast_class::nonfinite], q.lost(), st.errors.sqnr_db(), st.errors.mean_rel(),
                   st.errors.max_rel, st.blocks, st.clipped_blocks, st.any_vanish_blocks, st.most_vanish_blocks,
                   st.zero_blocks, st.nan_scale_blocks, st.min_scale, st.max_scale);
        fmt::print(",{},{}\n", q.from_stats ? "block_stats" : "values", q.exact ? "true" : "false");
      }
    return exit_ok;
  }
  fmt::print("{}: step {} (index {}): {} layers, {} operand x GEMM cells, {} recipes\n", printable(r.trace), r.step,
             r.step_index, r.layers.size(), r.cells.size(), nr);
  if (!r.skipped.empty())
    fmt::print("not quantized (histograms only): {}\n", printable(fmt::format("{}", fmt::join(r.skipped, ", "))));
  if (std::any_of(r.cells.begin(), r.cells.end(), [](const operand_cell& c) { return c.results.front().from_stats; }))
    fmt::print("operands without raw values are answered from their block statistics (docs/recipes.md): exact for "
               "power-of-two scales, low..high bounds otherwise; SQNR needs the values\n");
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    fmt::print("\n{}\n", printable(r.layers[l]));
    fmt::print("  {:<9} {:>11} {:<26} {:>5} {:>6} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8}  {}\n", "operand", "matrix",
               "recipe", "elem", "block", "underflow", "subnorm", "overflow", "SQNR dB", "mean rel", "clipped", "vanish",
               "scales");
    for (const auto& c : r.cells) {
      if (c.layer != l) continue;
      for (std::size_t k = 0; k < nr; ++k) {
        const auto& q = c.results[k];
        const auto first = k ? "" : cell_name(c.role, c.use.gemm);
        const auto matrix = k ? "" : fmt::format("{}x{}", c.rows, c.cols);
        if (!q.answered()) {
          fmt::print("  {:<9} {:>11} {:<26} not answerable from block statistics: {}\n", first, matrix,
                     printable(specs[k]), printable(q.unanswered));
          continue;
        }
        const auto& st = q.stats;
        const auto& hi = q.from_stats ? q.high : q.stats;
        const auto n = st.counts.total();
        // From block statistics: a bound prints as low..high; the error statistics need the values.
        const auto pct = [](std::uint64_t lo, std::uint64_t up, std::uint64_t of) {
          return lo == up ? percent(lo, of) : percent(lo, of) + ".." + percent(up, of);
        };
        fmt::print("  {:<9} {:>11} {:<26} {:>5} {:>6} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8}  2^{}..2^{}{}\n", first, matrix,
                   printable(specs[k]), q.element, fmt::format("{}x{}", q.block_rows, q.block_cols),
                   pct(st.counts[cast_class::underflow], hi.counts[cast_class::underflow], n),
                   pct(st.counts[cast_class::subnormal], hi.counts[cast_class::subnormal], n),
                   pct(st.counts[cast_class::overflow], hi.counts[cast_class::overflow], n),
                   q.from_stats ? "-" : fmt::format("{:.2f}", st.errors.sqnr_db()),
                   q.from_stats ? "-" : fmt::format("{:.3g}", st.errors.mean_rel()),
                   pct(st.clipped_blocks, hi.clipped_blocks, st.blocks),
                   pct(st.any_vanish_blocks, hi.any_vanish_blocks, st.blocks),
                   st.scale_binades.empty() ? 0 : st.scale_binades.begin()->first,
                   st.scale_binades.empty() ? 0 : st.scale_binades.rbegin()->first,
                   !q.from_stats ? "" : shown_exact(q) ? "  (block stats)" : "  (block stats: bounds)");
      }
    }
  }
  fmt::print("\nworst layers per recipe (the largest fraction of an operand's nonzero elements lost in a GEMM, then lowest SQNR):\n");
  for (std::size_t k = 0; k < nr; ++k) {
    std::string line;
    for (std::size_t t = 0; t < v.recipes[k].layers.size() && t < std::size_t(o.worst); ++t) {
      const auto& lv = v.recipes[k].layers[t];
      const auto& c = r.cells[lv.worst_cell];
      line += fmt::format("{}{} ({} {:.3g}% lost{})", t ? ", " : "", printable(r.layers[lv.layer]),
                          cell_name(c.role, c.use.gemm), 100 * lv.worst_lost, db_note("; min ", lv.min_sqnr_db));
    }
    if (line.empty()) line = "(not answerable from the block statistics)";
    fmt::print("  {:<28} {}\n", printable(specs[k]), line);
  }
  if (o.budget >= 0) {
    fmt::print("\nkeep in BF16 (layers where an operand loses more than {} of its nonzero elements in a GEMM):\n",
               fraction_percent(o.budget, 3));
    for (std::size_t k = 0; k < nr; ++k) {
      std::string line;
      for (const auto l : v.recipes[k].keep_bf16) line += (line.empty() ? "" : ", ") + printable(r.layers[l]);
      if (v.recipes[k].unanswered == r.cells.size()) {
        fmt::print("  {:<28} (not answerable from the block statistics)\n", printable(specs[k]));
        continue;
      }
      fmt::print("  {:<28} {} of {} layers{}{}\n", printable(specs[k]), v.recipes[k].keep_bf16.size(), r.layers.size(),
                 line.empty() ? "" : ": ", line);
    }
  }
  fmt::print("\nloses least over the step (fewest nonzero elements lost over every operand x GEMM, then highest SQNR):\n");
  for (std::size_t t = 0; t < v.ranking.size(); ++t) {
    const auto& rv = v.recipes[v.ranking[t]];
    const std::size_t cells = r.cells.size();
    if (rv.unanswered == cells)
      fmt::print("  {}. {:<25} not answerable from the block statistics\n", t + 1, printable(specs[v.ranking[t]]));
    else
      fmt::print("  {}. {:<25} {:.3g}% lost{}{}\n", t + 1, printable(specs[v.ranking[t]]), 100 * rv.lost_fraction(),
                 db_note(", ", rv.errors.sqnr_db()),
                 rv.unanswered ? fmt::format(" ({} of {} operand x GEMM cells not answerable)", rv.unanswered, cells) : "");
  }
  return exit_ok;
}

int run(const recipes_options& o) {
  std::vector<std::string> specs = o.recipes;
  if (specs.empty())
    for (const auto d : default_block_recipes()) specs.emplace_back(d);
  if (!o.plot.empty()) try {
      plot_is_svg(o.plot);  // before the work, not after
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  if (o.inputs.size() == 1 && sniff_input(o.inputs.front()) == input_kind::hdf5 && records_operands(o.inputs.front())) {
    if (!o.role.empty() || !o.axis.empty() || !o.gemm.empty())
      throw usage_error("--role, --axis and --gemm do not apply to a trace of GEMM operands: each is quantized as its "
                        "recorded role, under each GEMM it feeds");
    return run_operands(o, specs);
  }
  const operand_role role = parse_role(o.role.empty() ? "input" : o.role, "--role");
  block_axis axis = block_axis::row;
  if (!o.axis.empty()) axis = parse_axis(o.axis, "--axis");
  if (!o.gemm.empty()) {
    // The reduction dimension of each GEMM (docs/recipes.md): fprop X W^T over `in`; dgrad dY W
    // over `out`; wgrad dY^T X over tokens.
    if (o.gemm == "fprop" && role != operand_role::grad) axis = block_axis::row;
    else if (o.gemm == "dgrad" && role != operand_role::input) axis = role == operand_role::grad ? block_axis::row : block_axis::column;
    else if (o.gemm == "wgrad" && role != operand_role::weight) axis = block_axis::column;
    else throw usage_error(fmt::format("--gemm {} has no {} operand", o.gemm, name(role)));
  }
  std::vector<std::unique_ptr<recipe>> made;
  for (const auto& s : specs) made.push_back(make_recipe(s));  // option_error: exit 2

  std::vector<operand> ops;
  for (const auto& in : o.inputs) {
    if (sniff_input(in) == input_kind::hdf5)
      for (auto& t : load_trace(in, o.step)) ops.push_back(std::move(t));
    else
      ops.push_back(load(in));
  }
  heartbeat_done();  // the files are read: no stall limit on the quantization and the report
  std::vector<row> rows;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    for (std::size_t k = 0; k < made.size(); ++k) {
      rows.push_back({i, k, block_quantize(ops[i].values, ops[i].rows, ops[i].cols, *made[k], role, axis)});
    }
    ops[i].values = {};  // only the results are kept
  }
  if (!o.plot.empty()) {
    recipes_picture pic;
    pic.title = fmt::format("elements lost per operand and recipe (role {}, blocks along {}s)", name(role), name(axis));
    for (const auto& op : ops) pic.operands.push_back(op.path);
    pic.recipes = specs;
    for (const auto& r : rows) pic.lost.push_back(r.lost());
    write_recipes_plot(o.plot, pic, o.inputs);
  }

  if (o.json) {
    nlohmann::ordered_json j;
    j["role"] = name(role);
    j["axis"] = name(axis);
    j["operands"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < ops.size(); ++i) {
      nlohmann::ordered_json e;
      e["path"] = ops[i].path;
      e["shape"] = ops[i].shape;
      e["matrix"] = {ops[i].rows, ops[i].cols};
      e["results"] = nlohmann::ordered_json::array();
      for (const auto& r : rows)
        if (r.operand == i) e["results"].push_back(to_json(r, specs[r.recipe]));
      j["operands"].push_back(e);
    }
    fmt::print("{}\n", json_text(j, 2));
    return exit_ok;
  }
  if (o.csv) {
    fmt::print("operand,recipe,element,block_rows,block_cols,count,zero,underflow,subnormal,normal,overflow,nonfinite,"
               "sqnr_db,mean_rel_error,max_rel_error,blocks,clipped_blocks,any_vanish_blocks,most_vanish_blocks,"
               "zero_blocks,nan_scale_blocks,min_scale,max_scale\n");
    for (const auto& r : rows) {
      const auto& st = r.q.stats;
      const auto& c = st.counts;
      fmt::print("{},{},{},{},{},{},{},{},{},{},{},{},{:.6g},{:.6g},{:.6g},{},{},{},{},{},{},{:.9g},{:.9g}\n",
                 csv_field(printable(ops[r.operand].path)), csv_field(printable(specs[r.recipe])), r.q.element.name, r.q.block_rows,
                 r.q.block_cols, c.total(), c[cast_class::zero], c[cast_class::underflow], c[cast_class::subnormal],
                 c[cast_class::normal], c[cast_class::overflow], c[cast_class::nonfinite], st.errors.sqnr_db(),
                 st.errors.mean_rel(), st.errors.max_rel, st.blocks, st.clipped_blocks, st.any_vanish_blocks,
                 st.most_vanish_blocks, st.zero_blocks, st.nan_scale_blocks, st.min_scale, st.max_scale);
    }
    return exit_ok;
  }
  fmt::print("role {}, blocks along {}s{}\n", name(role), name(axis), o.gemm.empty() ? "" : " (" + o.gemm + ")");
  for (std::size_t i = 0; i < ops.size(); ++i) {
    fmt::print("\n{}  {} -> {} x {}\n", printable(ops[i].path), npy_shape_string(ops[i].shape), ops[i].rows, ops[i].cols);
    fmt::print("  {:<28} {:>5} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}  {}\n", "recipe", "elem", "block",
               "underflow", "subnorm", "overflow", "SQNR dB", "mean rel", "clipped", "vanish", "most 0", "scales");
    for (const auto& r : rows) {
      if (r.operand != i) continue;
      const auto& st = r.q.stats;
      const auto n = st.counts.total();
      fmt::print("  {:<28} {:>5} {:>8} {:>9} {:>9} {:>9} {:>7.2f} {:>9.3g} {:>8} {:>8} {:>8}  2^{}..2^{}\n",
                 printable(specs[r.recipe]), r.q.element.name, fmt::format("{}x{}", r.q.block_rows, r.q.block_cols),
                 percent(st.counts[cast_class::underflow], n), percent(st.counts[cast_class::subnormal], n),
                 percent(st.counts[cast_class::overflow], n), st.errors.sqnr_db(), st.errors.mean_rel(),
                 percent(st.clipped_blocks, st.blocks), percent(st.any_vanish_blocks, st.blocks),
                 percent(st.most_vanish_blocks, st.blocks),
                 st.scale_binades.empty() ? 0 : st.scale_binades.begin()->first,
                 st.scale_binades.empty() ? 0 : st.scale_binades.rbegin()->first);
    }
  }
  // The worst operands under each recipe: most nonzero elements lost (underflow + overflow: what
  // a user keeps in BF16 for), then lowest SQNR (dominated by the largest values).
  if (ops.size() > 1) {
    fmt::print("\nworst operands per recipe (most nonzero elements lost to underflow + overflow, then lowest SQNR):\n");
    for (std::size_t k = 0; k < specs.size(); ++k) {
      std::vector<const row*> rs;
      for (const auto& r : rows)
        if (r.recipe == k) rs.push_back(&r);
      std::stable_sort(rs.begin(), rs.end(), [](const row* a, const row* b) {
        if (a->lost() != b->lost()) return a->lost() > b->lost();
        const double sa = a->q.stats.errors.sqnr_db(), sb = b->q.stats.errors.sqnr_db();
        return sa < sb;  // NaN (no nonzero element) compares false: kept in order
      });
      std::string line;
      for (std::size_t t = 0; t < rs.size() && t < std::size_t(o.worst); ++t)
        line += fmt::format("{}{} ({:.1f} dB, {:.3g}% lost)", t ? ", " : "", printable(ops[rs[t]->operand].path),
                            rs[t]->q.stats.errors.sqnr_db(), 100 * rs[t]->lost());
      fmt::print("  {:<28} {}\n", printable(specs[k]), line);
    }
  }
  // What to do about it: the operands over the budget per recipe (keep them in BF16), and per
  // operand the recipe that loses least.
  if (o.budget >= 0) {
    fmt::print("\nkeep in BF16 (more than {} of the nonzero elements lost):\n", fraction_percent(o.budget, 3));
    for (std::size_t k = 0; k < specs.size(); ++k) {
      std::string line;
      for (const auto& r : rows)
        if (r.recipe == k && r.lost() > o.budget)
          line += fmt::format("{}{} ({:.3g}%)", line.empty() ? "" : ", ", printable(ops[r.operand].path), 100 * r.lost());
      fmt::print("  {:<28} {}\n", printable(specs[k]), line.empty() ? "none" : line);
    }
  }
  if (specs.size() > 1) {
    fmt::print("\nloses least per operand (fewest elements lost, then highest SQNR):\n");
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const row* best = nullptr;
      for (const auto& r : rows)
        if (r.operand == i && (!best || r.lost() < best->lost() ||
                               (r.lost() == best->lost() && r.q.stats.errors.sqnr_db() > best->q.stats.errors.sqnr_db())))
          best = &r;
      fmt::print("  {:<28} {} ({:.3g}% lost, {:.1f} dB)\n", printable(ops[i].path), printable(specs[best->recipe]),
                 100 * best->lost(), best->q.stats.errors.sqnr_db());
    }
  }
  return exit_ok;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<recipes_options>();
  auto* sub = app.add_subcommand("recipes", "GEMM operands under block-scaled FP8/FP4 recipes side by side, per block");
  sub->add_option("OPERAND", o->inputs,
                  ".npy operands (float16/32/64), or a trace (.h5: the raw-valued tensors of one\nstep; a trace of GEMM operands: each under each GEMM it feeds); each seen as\n(leading dims) x (last dim)")
      ->required();
  sub->add_option("--step", o->step, "a trace's step, by index [default: the last with raw values]")->check(count_check(false));
  sub->add_option("-r,--recipe", o->recipes,
                  "a recipe (repeatable; fpscope replay --help lists their keys) [default: mxfp8,\n"
                  "mxfp8:scaling_mode=floor, mxfp4, nvfp4, nvfp4:profile=torchao, fp8-block, deepseek, te-current]")
      ->check(parsed_by([](const std::string& v) { (void)make_recipe(v); }, "--recipe", "SPEC"));
  sub->add_option("--role", o->role, "which GEMM operand: input (X), weight (W), grad (dY) [default: input]\n(a trace of GEMM operands gives each its own)")
      ->check(parsed_by([](const std::string& v) { (void)parse_role(v, "--role"); }, "--role", "ROLE"));
  auto* ax = sub->add_option("--axis", o->axis, "blocks along rows (the last dim is reduced) or columns [default: row]")
                 ->check(parsed_by([](const std::string& v) { (void)parse_axis(v, "--axis"); }, "--axis", "AXIS"));
  sub->add_option("--gemm", o->gemm, "the GEMM the operand feeds; sets the axis: fprop, dgrad, wgrad")
      ->check(CLI::IsMember({"fprop", "dgrad", "wgrad"}))
      ->excludes(ax);
  sub->add_option("--keep-bf16", o->budget,
                  "a budget: name the operands (the layers, in a trace of GEMM operands) that lose\nmore than this fraction "
                  "of their nonzero elements (underflow + overflow) under each\nrecipe, e.g. 0.01")
      ->check(parsed_by([](const std::string& v) {
        const double b = parse_number(v, "--keep-bf16");
        if (!(b >= 0 && b <= 1)) throw option_error("--keep-bf16: a fraction in [0, 1], not " + fpscope::quoted(v));
      }, "--keep-bf16", "FRACTION"));
  sub->add_option("--worst", o->worst, "operands (layers) named per recipe in the summary [default: 3]")->check(count_check(true));
  sub->add_option("--plot", o->plot,
                  "draw the heatmap of elements lost, operands x recipes (layers x operand x GEMM\nper recipe for a trace of GEMM operands), to FILE.svg|png");
  auto* j = sub->add_flag("--json", o->json, "print JSON (docs/recipes.md) instead of the table");
  sub->add_flag("--csv", o->csv, "print CSV, one row per operand x recipe")->excludes(j);
  sub->footer(
      "Each operand is quantized, separately, by each recipe as the GEMM operand --role with\n"
      "blocks along the reduction dimension (--axis or --gemm); weights take the recipe's 2-D\n"
      "blocks (nvfp4 16x16, fp8-block and deepseek 128x128). Columns: element classes as % of\n"
      "all elements (docs/hist.md), SQNR and mean relative error of the dequantized operand,\n"
      "blocks that clipped (an element overflowed), blocks where any / most nonzero elements\n"
      "vanished, and the binades of the dequantization scales. Exact counts.\n"
      "\n"
      "Examples:\n"
      "  fpscope recipes x.npy w.npy                              # default recipes, input role\n"
      "  fpscope recipes dy.npy --role grad --gemm wgrad -r nvfp4 -r mxfp8\n"
      "  fpscope recipes w.npy --role weight --json\n"
      "  fpscope recipes run.h5 --role weight --keep-bf16 0.01 --plot lost.svg\n"
      "  fpscope recipes run.h5 --step 3 --role weight -r nvfp4   # a trace's recorded tensors\n"
      "  fpscope recipes datasets/traces/lm-operands.h5 --keep-bf16 0.01 --plot layers.svg\n"
      "                                # a trace of GEMM operands: layers x operand x GEMM");
  return [o]() -> int {
    // A trace is read in a worker process (cli.hpp contained): one trace per run.
    std::string trace;
    for (const auto& in : o->inputs)
      if (sniff_input(in) == input_kind::hdf5) {
        if (!trace.empty() || o->inputs.size() > 1)
          throw usage_error("recipes reads one trace per run, without other operands");
        trace = in;
      }
    if (!trace.empty()) return contained(trace, [o] { return run(*o); });
    if (o->step >= 0) throw usage_error("--step applies to a trace");
    return run(*o);
  };
}

const registrar reg{"recipes", 75, &setup};

}  // namespace
}  // namespace fpscope::cli
