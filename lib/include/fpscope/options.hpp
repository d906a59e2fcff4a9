// The one option layer: how every front end (the fpscope subcommands, the Python module) reads
// the names and numbers a user types. Formats, rounding modes, profiles, overflow policies,
// scales, thread counts, step ranges, and the "name:key=value,flag" grammar of every policy and
// recipe. Each parser checks completely and throws option_error with one line naming the option
// and the text; the CLI turns it into exit status 2, Python into ValueError.
//
// Numbers are read one way everywhere: "2^K" (K a decimal integer) or a decimal number as
// std::from_chars reads it: no leading or trailing space, no hex, no "+"; inf and nan parse as
// numbers and then fail the range checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fpscope/format.hpp"
#include "fpscope/policy.hpp"

namespace fpscope {

/// A malformed or out-of-range option value: one line, naming the option and echoing the text
/// with control characters replaced.
class option_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// `s` in single quotes, control characters and DEL replaced by '?', at most 80 characters:
/// user text inside a one-line message.
std::string quoted(std::string_view s);

/// The shortest decimal text that reads back as `v` ("65536", "0.5", "1e-05"): numbers inside
/// descriptions and messages.
std::string number_text(double v);

// ---- numbers -----------------------------------------------------------------------------------

/// "2^K" or a decimal; `what` names the option in the message. Out-of-range decimals (1e-400,
/// 1e400) are errors, not 0 or inf.
double parse_number(std::string_view text, std::string_view what);
/// A positive finite number whose float32 is positive and finite (a scale a kernel multiplies
/// by in float32, or that upstream holds in a float32). The double is returned unrounded.
double parse_scale(std::string_view text, std::string_view what = "--scale");
/// Checks a scale given as a number (Python): the rules of parse_scale.
double check_scale(double v, std::string_view what = "scale");
/// An integer in [lo, hi], written as a decimal integer or 2^K.
long long parse_integer(std::string_view text, std::string_view what, long long lo, long long hi);
/// true/false, 1/0, on/off, yes/no.
bool parse_boolean(std::string_view text, std::string_view what);

/// Scales of a sweep: comma-separated items, each a scale (parse_scale, then rounded to float32)
/// or a range 2^A:2^B[:STEP] of every (STEP-th) power of two from 2^A to 2^B. At most
/// max_scales in all.
inline constexpr std::size_t max_scales = 4096;
std::vector<float> parse_scales(std::string_view text, std::string_view what = "--scales");

/// Depths of a sweep over K (fpscope gemm --k-sweep): comma-separated items, each a positive
/// integer (decimal or 2^K) or a range LO:HI of LO, 2 LO, 4 LO, ... up to HI, HI itself included.
/// The result ascends, without repeats; every depth at most `max` (else an error naming it), at
/// most max_depths in all.
inline constexpr std::size_t max_depths = 256;
std::vector<std::size_t> parse_depths(std::string_view text, std::size_t max, std::string_view what = "--k-sweep");

/// Thread counts: 0 means all cores; more than max_threads is refused (libgomp fails or crashes
/// far below the int range).
inline constexpr int max_threads = 1024;
int check_threads(long long n, std::string_view what = "--threads");
int parse_threads(std::string_view text, std::string_view what = "--threads");

/// Training steps "A:B", "A:", ":B" or "A" (inclusive; open ends are the int64 limits; empty
/// text: every step). A > B is an error.
struct step_range {
  std::int64_t first = std::numeric_limits<std::int64_t>::min();
  std::int64_t last = std::numeric_limits<std::int64_t>::max();
  bool contains(std::int64_t s) const { return s >= first && s <= last; }
};
step_range parse_steps(std::string_view text, std::string_view what = "--steps");

// ---- names -------------------------------------------------------------------------------------

format parse_format(std::string_view name, std::string_view what = "format");
/// Comma-separated format names ("fp16,bf16,e4m3"), each as parse_format, each at most once.
std::vector<format> parse_formats(std::string_view names, std::string_view what = "--formats");
rounding parse_rounding(std::string_view name, std::string_view what = "--rounding");
profile parse_profile(std::string_view name, std::string_view what = "--profile");
overflow parse_overflow(std::string_view name, std::string_view what = "--overflow");

/// "rne, rtz, ...", "ieee, cuda, ...", "inf, saturate": for messages and --help.
std::string rounding_names();
std::string profile_names();
std::string overflow_names();

// ---- conversions -------------------------------------------------------------------------------

/// What a user asks of a conversion, as typed; empty fields take defaults.
struct conversion_request {
  std::string format;
  std::string profile;   ///< empty: ieee (or the caller's default, see resolve)
  std::string rounding;  ///< empty: the profile's
  std::string overflow;  ///< empty: the profile's
  std::uint64_t seed = 0;
};

/// A resolved conversion: the format, the profile's policy for it, the overrides on top.
struct conversion {
  format fmt{};
  policy pol{};
  profile prof = profile::ieee;
  /// "e4m3 (rounding rne, overflow inf, profile ieee)"
  std::string describe() const;
};

/// The profile's policy for the format, then the rounding and overflow overrides, then the seed.
/// Fields left empty in `r` take `default_format` / `default_profile`.
conversion resolve(const conversion_request& r, std::string_view default_format = {},
                   std::string_view default_profile = "ieee");

/// Refuses what cannot give a fixed class per value (counting, replay): stochastic rounding and
/// unsigned scale formats. `who` starts the message ("hist", "replay").
void require_deterministic(const conversion& c, std::string_view who);

// ---- the policy grammar: "name[:key=value,flag,...]" ------------------------------------------

/// One key of a policy. `names` lists the upstream argument name first, then accepted aliases.
/// A boolean key may also be given bare ("pow2" means "pow2=true").
struct spec_key {
  std::vector<std::string_view> names;
  enum class kind { number, integer, boolean, choice } type;
  /// Called once with the value text (already known to be given only once).
  std::function<void(std::string_view value)> set;
  std::string_view help = {};  ///< "2^16", "max|most_recent": shown in --help and messages
};

/// Parses "name:rest" for the policy `name` with `keys`: each key at most once (by any of its
/// names), no unknown keys, no empty items. A bare first item goes to `bare` when given (for
/// "static:S"); otherwise a bare item must be a boolean key. Messages: "te-delayed: 'margin' given
/// twice", "te-current: unknown key 'pow3' (known: power_2_scale|pow2, amax_epsilon)".
void parse_spec_keys(std::string_view policy, std::string_view rest, std::span<const spec_key> keys,
                     const std::function<void(std::string_view)>& bare = {});

/// "name" and "key=value,..." of a spec (split at the first ':').
std::pair<std::string_view, std::string_view> split_spec(std::string_view spec);

/// Calls f(item) for each comma-separated item of `text`, in order, empty ones included ("" is
/// one empty item, "a," is "a" and ""): every list option (formats, scales, a spec's keys,
/// gemm's architectures) is split here, without a copy.
template <class F>
void for_each_item(std::string_view text, F&& f) {
  for (std::size_t at = 0; at <= text.size();) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    f(text.substr(at, comma - at));
    at = comma + 1;
  }
}

/// Helpers for spec_key::set: parse into `out` with the shared number syntax; the message names
/// "policy: key".
std::function<void(std::string_view)> set_number(std::string_view policy, std::string_view key, double& out);
std::function<void(std::string_view)> set_scale(std::string_view policy, std::string_view key, double& out);
std::function<void(std::string_view)> set_integer(std::string_view policy, std::string_view key, int& out,
                                                  long long lo, long long hi);
std::function<void(std::string_view)> set_boolean(std::string_view policy, std::string_view key, bool& out);
/// The value must be one of `choices`; `out` receives its index.
std::function<void(std::string_view)> set_choice(std::string_view policy, std::string_view key, int& out,
                                                 std::vector<std::string_view> choices);

/// "key|alias=HELP" for each key, comma-separated: the grammar of a policy in --help.
std::string describe_keys(std::span<const spec_key> keys);

}  // namespace fpscope
