// Block-scaled recipes over a trace's GEMM operands (fpscope/operand_report.hpp).
#include "fpscope/operand_report.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include "fpscope/block_stats.hpp"
#include "fpscope/options.hpp"
#include "fpscope/recipe.hpp"

namespace fpscope {

namespace {

// docs/recipes.md, "Orientation and shapes": each GEMM reduces over one dimension of each
// operand, and the blocks run along it. fprop Y = X W^T reduces over `in` (rows of X and W);
// dgrad dX = dY W over `out` (rows of dY, columns of W); wgrad dW = dY^T X over tokens (columns
// of dY and X). Python's GEMM_AXES (lib/python/fpscope/__init__.py) is the same table.
constexpr gemm_use input_uses[] = {{"fprop", operand_role::input, block_axis::row},
                                   {"wgrad", operand_role::input, block_axis::column}};
constexpr gemm_use weight_uses[] = {{"fprop", operand_role::weight, block_axis::row},
                                    {"dgrad", operand_role::weight, block_axis::column}};
constexpr gemm_use grad_uses[] = {{"dgrad", operand_role::grad, block_axis::row},
                                  {"wgrad", operand_role::grad, block_axis::column}};

bool is_operand(const trace_tensor& t) {
  return t.operand && t.operand->role != trace_role::wgrad && t.count > 0;
}

// NaN-aware "a is lower": NaN (no nonzero element) sorts after every number.
bool lower(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return !std::isnan(a) && std::isnan(b);
  return a < b;
}

// One operand under one recipe in one GEMM, from its values (block_quantize).
operand_quant quantized(std::span<const float> values, std::uint64_t rows, std::uint64_t cols, recipe& rec,
                        const gemm_use& use) {
  block_quant_result q = block_quantize(values, std::size_t(rows), std::size_t(cols), rec, use.role, use.axis);
  operand_quant oq;
  oq.stats = std::move(q.stats);
  oq.element = std::string(q.element.name);
  oq.scale_format = std::string(q.scale_format.name);
  oq.describe = std::move(q.describe);
  oq.block_rows = q.block_rows, oq.block_cols = q.block_cols;
  oq.tensor_scale = q.tensor_scale;
  return oq;
}

// The same from its block statistics (answer_block_stats): bounds, or why they cannot answer.
operand_quant answered(const operand_block_stats& bs, recipe& rec, const gemm_use& use) {
  operand_quant q;
  q.from_stats = true;
  try {
    block_stats_answer a = answer_block_stats(bs, rec, use.role, use.axis);
    q.exact = a.exact();
    q.stats = std::move(a.low);
    q.high = std::move(a.high);
    q.element = std::string(a.element.name);
    q.describe = std::move(a.describe);
    q.block_rows = a.block_rows;
    q.block_cols = a.block_cols;
  } catch (const option_error& e) {  // a geometry not recorded, NVFP4's Hadamard transform
    q.exact = false;
    q.unanswered = e.what();
  }
  return q;
}

}  // namespace

std::span<const std::string_view> default_block_recipes() {
  static constexpr std::string_view specs[] = {"mxfp8", "mxfp8:scaling_mode=floor", "mxfp4", "nvfp4",
                                               "nvfp4:profile=torchao", "fp8-block", "deepseek", "te-current"};
  return specs;
}

std::span<const gemm_use> gemms_of(trace_role r) {
  switch (r) {
    case trace_role::input: return input_uses;
    case trace_role::weight: return weight_uses;
    case trace_role::grad: return grad_uses;
    case trace_role::wgrad: return {};
  }
  return {};
}

bool has_answerable_operands(const trace_step& s) {
  return std::any_of(s.tensors.begin(), s.tensors.end(),
                     [](const trace_tensor& t) { return is_operand(t) && (t.has_values || t.has_block_stats); });
}

operand_report report_operands(const trace_reader& tr, long long want, std::span<const std::string> specs,
                               const std::function<void()>& progress) {
  const auto tick = [&] {
    if (progress) progress();
  };
  std::vector<std::unique_ptr<recipe>> made;
  for (const auto& s : specs) made.push_back(make_recipe(s));  // option_error before any reading
  if (tr.size() == 0) throw trace_error(tr.path() + ": the trace holds no complete step");
  std::size_t at = tr.size();
  if (want >= 0) {
    if (std::uint64_t(want) >= tr.size())
      throw option_error("step index " + std::to_string(want) + ": the trace has step indices 0 to " + std::to_string(tr.size() - 1));
    at = std::size_t(want);
  } else {
    bool any = false;
    for (std::size_t i = tr.size(); i-- > 0 && at == tr.size();) {
      const auto st = tr.step(i);
      tick();
      any = any || std::any_of(st.tensors.begin(), st.tensors.end(), is_operand);
      if (has_answerable_operands(st)) at = i;
    }
    if (at == tr.size())
      throw trace_error(tr.path() + (any ? ": no step holds operands with raw values or block statistics (histograms "
                                           "cannot be block-quantized)"
                                         : ": the trace records no GEMM operands (@role; docs/trace.md, \"GEMM operands\")"));
  }
  const trace_step st = tr.step(at);
  operand_report r;
  r.trace = tr.path();
  r.step_index = at;
  r.step = st.step;
  r.recipes.assign(specs.begin(), specs.end());
  // Layers in the order of their first operand; in a layer, X, W, dY (the recorder's order).
  std::vector<const trace_tensor*> ops;
  for (const auto& t : st.tensors) {
    if (!is_operand(t)) continue;
    if (std::find(r.layers.begin(), r.layers.end(), t.operand->layer) == r.layers.end()) r.layers.push_back(t.operand->layer);
    if (!t.has_values && !t.has_block_stats) r.skipped.push_back(t.name);
    else ops.push_back(&t);
  }
  if (ops.empty())
    throw trace_error(tr.path() + ": step " + std::to_string(st.step) + " holds no operands with raw values or block statistics");
  const auto layer_of = [&](const trace_tensor* t) {
    return std::size_t(std::find(r.layers.begin(), r.layers.end(), t->operand->layer) - r.layers.begin());
  };
  std::stable_sort(ops.begin(), ops.end(), [&](const trace_tensor* a, const trace_tensor* b) {
    const auto la = layer_of(a), lb = layer_of(b);
    return la != lb ? la < lb : a->operand->role < b->operand->role;
  });
  std::vector<float> values;
  for (const trace_tensor* t : ops) {
    std::optional<operand_block_stats> bs;  // an operand without values: its block statistics
    if (t->has_values) {
      values.clear();
      values.reserve(std::size_t(t->count));
      tr.values(st, *t, [&](std::span<const float> v) {
        tick();
        values.insert(values.end(), v.begin(), v.end());
      });
      if (values.size() != t->count) throw trace_error(tr.path() + ": tensor " + t->name + ": fewer values than @count");
    } else {
      bs = tr.block_stats(st, *t);
      tick();
      if (bs->rows != t->operand->rows || bs->cols != t->operand->cols)
        throw trace_error(tr.path() + ": tensor " + t->name + ": block statistics of a " + std::to_string(bs->rows) + "x" +
                          std::to_string(bs->cols) + " matrix for a " + std::to_string(t->operand->rows) + "x" +
                          std::to_string(t->operand->cols) + " @gemm_shape");
    }
    for (const gemm_use& use : gemms_of(t->operand->role)) {
      operand_cell c{layer_of(t), t->name, t->operand->role, use, t->operand->rows, t->operand->cols, {}};
      for (auto& rec : made) {
        c.results.push_back(bs ? answered(*bs, *rec, use) : quantized(values, c.rows, c.cols, *rec, use));
        tick();
      }
      r.cells.push_back(std::move(c));
    }
  }
  return r;
}

operand_verdicts judge(const operand_report& r, double budget) {
  operand_verdicts v;
  v.budget = budget;
  const std::size_t nr = r.recipes.size(), nl = r.layers.size();
  for (std::size_t k = 0; k < nr; ++k) {
    recipe_verdict rv;
    std::vector<layer_verdict> by_layer(nl);
    std::vector<bool> seen(nl, false);
    for (std::size_t l = 0; l < nl; ++l) by_layer[l].layer = l, by_layer[l].min_sqnr_db = std::nan("");
    for (std::size_t i = 0; i < r.cells.size(); ++i) {
      const auto& c = r.cells[i];
      const auto& q = c.results[k];
      if (!q.answered()) {  // the block statistics cannot answer it: no verdict from it
        ++rv.unanswered;
        continue;
      }
      auto& lv = by_layer[c.layer];
      const double lost = q.lost(), sqnr = q.stats.errors.sqnr_db();
      const double worst_sqnr = r.cells[lv.worst_cell].results[k].stats.errors.sqnr_db();
      if (!seen[c.layer] || lost > lv.worst_lost || (lost == lv.worst_lost && lower(sqnr, worst_sqnr)))
        lv.worst_cell = i, lv.worst_lost = lost;
      if (!seen[c.layer] || lower(sqnr, lv.min_sqnr_db)) lv.min_sqnr_db = sqnr;
      seen[c.layer] = true;
      rv.lost += q.stats.counts[cast_class::underflow] + q.stats.counts[cast_class::overflow];
      rv.nonzero += q.stats.counts.nonzero_finite();
      rv.errors += q.stats.errors;
    }
    for (std::size_t l = 0; l < nl; ++l) {
      by_layer[l].keep_bf16 = budget >= 0 && seen[l] && by_layer[l].worst_lost > budget;
      if (by_layer[l].keep_bf16) rv.keep_bf16.push_back(l);
    }
    std::vector<layer_verdict> ranked;
    for (std::size_t l = 0; l < nl; ++l)
      if (seen[l]) ranked.push_back(by_layer[l]);
    std::stable_sort(ranked.begin(), ranked.end(), [](const layer_verdict& a, const layer_verdict& b) {
      if (a.worst_lost != b.worst_lost) return a.worst_lost > b.worst_lost;
      return lower(a.min_sqnr_db, b.min_sqnr_db);
    });
    rv.layers = std::move(ranked);
    v.recipes.push_back(std::move(rv));
  }
  v.ranking.resize(nr);
  for (std::size_t k = 0; k < nr; ++k) v.ranking[k] = k;
  std::stable_sort(v.ranking.begin(), v.ranking.end(), [&](std::size_t a, std::size_t b) {
    if ((v.recipes[a].unanswered > 0) != (v.recipes[b].unanswered > 0)) return v.recipes[b].unanswered > 0;
    const double la = v.recipes[a].lost_fraction(), lb = v.recipes[b].lost_fraction();
    if (la != lb) return la < lb;
    return lower(v.recipes[b].errors.sqnr_db(), v.recipes[a].errors.sqnr_db());
  });
  v.best_per_layer.assign(nl, 0);
  for (std::size_t l = 0; l < nl; ++l) {
    const layer_verdict* best = nullptr;
    for (std::size_t k = 0; k < nr; ++k)
      for (const auto& lv : v.recipes[k].layers)
        if (lv.layer == l && (!best || lv.worst_lost < best->worst_lost ||
                              (lv.worst_lost == best->worst_lost && lower(best->min_sqnr_db, lv.min_sqnr_db)))) {
          best = &lv;
          v.best_per_layer[l] = k;
        }
  }
  return v;
}

nlohmann::ordered_json block_stats_json(const block_stats& st) {
  nlohmann::ordered_json j, counts, bins;
  for (int c = 0; c < cast_class_count; ++c) counts[std::string(name(static_cast<cast_class>(c)))] = st.counts.n[std::size_t(c)];
  for (const auto& [e, n] : st.scale_binades) bins[std::to_string(e)] = n;
  for_each_stat(st, [&j](const char* key, auto x) { j[key] = x; });  // NaN and inf: null when dumped
  j["counts"] = counts;
  j["scale_binades"] = bins;
  return j;
}

nlohmann::ordered_json operand_report_json(const operand_report& r, const operand_verdicts& v) {
  using json = nlohmann::ordered_json;
  json j;
  j["trace"] = r.trace;
  j["step_index"] = r.step_index;
  j["step"] = r.step;
  j["recipes"] = r.recipes;
  j["layers"] = r.layers;
  j["skipped"] = r.skipped;
  j["operands"] = json::array();
  for (const auto& c : r.cells) {
    json e;
    e["layer"] = r.layers[c.layer];
    e["tensor"] = c.tensor;
    e["role"] = name(c.role);
    e["gemm"] = c.use.gemm;
    e["axis"] = name(c.use.axis);
    e["matrix"] = {c.rows, c.cols};
    e["results"] = json::array();
    for (std::size_t k = 0; k < c.results.size(); ++k) {
      const auto& q = c.results[k];
      json x;
      x["recipe"] = r.recipes[k];
      x["describe"] = q.describe;
      x["element"] = q.element;
      x["scale_format"] = q.scale_format;
      x["source"] = q.from_stats ? "block_stats" : "values";
      x["exact"] = q.exact;
      if (!q.answered()) {
        x["unanswered"] = q.unanswered;
        e["results"].push_back(std::move(x));
        continue;
      }
      x["block_shape"] = {q.block_rows, q.block_cols};
      x.update(block_stats_json(q.stats));  // from block statistics: the lower bounds
      if (!q.exact) x["high"] = block_stats_json(q.high);
      if (!q.from_stats) x["tensor_scale"] = q.tensor_scale;
      e["results"].push_back(std::move(x));
    }
    j["operands"].push_back(std::move(e));
  }
  json s;
  s["budget"] = v.budget >= 0 ? json(v.budget) : json(nullptr);
  s["recipes"] = json::array();
  for (std::size_t k = 0; k < v.recipes.size(); ++k) {
    const auto& rv = v.recipes[k];
    json x;
    x["recipe"] = r.recipes[k];
    x["lost"] = rv.lost;
    x["nonzero"] = rv.nonzero;
    x["lost_fraction"] = rv.lost_fraction();
    x["unanswered"] = rv.unanswered;
    x["sqnr_db"] = rv.errors.sqnr_db();
    x["keep_bf16"] = json::array();
    for (const auto l : rv.keep_bf16) x["keep_bf16"].push_back(r.layers[l]);
    x["layers"] = json::array();  // worst first
    for (const auto& lv : rv.layers) {
      const auto& c = r.cells[lv.worst_cell];
      x["layers"].push_back({{"layer", r.layers[lv.layer]}, {"worst_lost", lv.worst_lost}, {"min_sqnr_db", lv.min_sqnr_db},
                             {"worst_role", name(c.role)}, {"worst_gemm", c.use.gemm}, {"keep_bf16", lv.keep_bf16}});
    }
    s["recipes"].push_back(std::move(x));
  }
  s["ranking"] = json::array();
  for (const auto k : v.ranking) s["ranking"].push_back(r.recipes[k]);
  s["best_per_layer"] = json::object();
  for (std::size_t l = 0; l < r.layers.size(); ++l) s["best_per_layer"][r.layers[l]] = r.recipes[v.best_per_layer[l]];
  j["summary"] = std::move(s);
  return j;
}

}  // namespace fpscope
