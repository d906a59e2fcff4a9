// The recipe table's rows, one per file of this folder (registry.cpp lists them).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "fpscope/recipe.hpp"

namespace fpscope::detail {

/// One recipe: how --help shows it and how its spec is parsed. `keys` returns the grammar of its
/// keys (options.hpp's describe_keys over the same keys the parser uses).
struct entry {
  std::string_view name, summary, models;
  std::string (*keys)();
  std::unique_ptr<recipe> (*make)(std::string_view name, std::string_view rest);
};

/// The usual row: a recipe file defines its `Options`, a `keys(Options&)` binding the spec's
/// keys to them (found by argument-dependent lookup) and `Recipe(Options)`.
template <class Options, class Recipe>
std::unique_ptr<recipe> parse_recipe(std::string_view name, std::string_view rest) {
  Options o;
  parse_spec_keys(name, rest, keys(o));
  return std::make_unique<Recipe>(o);
}
template <class Options>
std::string keys_text() {
  Options o;
  return describe_keys(keys(o));
}

extern const entry static_entry, torch_entry, deepspeed_entry, megatron_entry;  // loss.cpp
extern const entry te_delayed_entry;                                            // te_delayed.cpp
extern const entry te_current_entry;                                            // te_current.cpp
extern const entry mx_entry;                                                    // mx.cpp
extern const entry block_entry;                                                 // block.cpp
// GEMM-operand block recipes (operand.cpp).
extern const entry mxfp8_entry, mxfp6_entry, mxfp4_entry, nvfp4_entry, fp8_block_entry, deepseek_entry;



}  // namespace fpscope::detail
