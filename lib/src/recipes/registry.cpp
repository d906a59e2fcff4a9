// The one table of recipes: a recipe is a file of this folder and a row here.
#include <vector>

#include "recipes.hpp"

namespace fpscope {
namespace detail {

namespace {
const entry* const table[] = {&static_entry,     &torch_entry,      &deepspeed_entry, &megatron_entry,
                              &te_delayed_entry, &te_current_entry, &mx_entry,        &block_entry,
                              // GEMM-operand block recipes (operand.cpp)
                              &mxfp8_entry, &mxfp6_entry, &mxfp4_entry, &nvfp4_entry, &fp8_block_entry, &deepseek_entry};
}  // namespace

}  // namespace detail

block_counts recipe::count_blocks(const tensor_meta&, std::span<const float>) {
  throw std::logic_error(describe() + " counts per tensor, not per block");
}

std::span<const recipe_info> recipes() {
  static const std::vector<recipe_info> list = [] {
    std::vector<recipe_info> v;
    for (const auto* e : detail::table) v.push_back({e->name, e->summary, e->keys(), e->models});
    return v;
  }();
  return list;
}

std::unique_ptr<recipe> make_recipe(std::string_view spec) {
  const auto [name, rest] = split_spec(spec);
  for (const auto* e : detail::table)
    if (e->name == name) return e->make(name, rest);
  std::string known;
  for (const auto* e : detail::table) known += (known.empty() ? "" : ", ") + std::string(e->name);
  throw option_error("unknown policy " + quoted(name) + " (known: " + known + ")");
}

}  // namespace fpscope
