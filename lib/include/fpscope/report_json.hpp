// The JSON schemas of fpscope's results, one per kind, shared by the CLI's --json and the Python
// module (which parses the same text): docs/json.md describes them. Needs nlohmann_json.
#pragma once

#include <nlohmann/json.hpp>

#include "fpscope/histogram.hpp"
#include "fpscope/replay.hpp"

namespace fpscope {

/// Class counts: "total", one key per class (fpscope::name(cast_class)), and "fraction_of_all"
/// (every class) and "fraction_of_nonzero_finite" (underflow, subnormal, normal, overflow), each
/// null where the denominator is 0.
nlohmann::ordered_json counts_json(const class_counts& c);

/// The JSON text of a result, as fpscope prints it (`indent` < 0: one line). Strings come from
/// files (tensor names, a trace's @model): control characters (C0, DEL and C1 alike) are JSON's
/// \u escapes, and bytes that are not valid UTF-8, which JSON cannot hold, become U+FFFD instead
/// of an exception.
std::string json_text(const nlohmann::ordered_json& j, int indent = -1);

/// A replay: trace, model, policy, format, steps (each with its counts and its tensors'), summary.
nlohmann::ordered_json replay_json(const replay_result& r);

}  // namespace fpscope
