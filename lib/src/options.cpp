#include "fpscope/options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace fpscope {
namespace {

[[noreturn]] void fail(std::string_view what, const std::string& problem) {
  throw option_error(std::string(what) + ": " + problem);
}

bool positive_finite_float32(double v) {
  const auto f = static_cast<float>(v);
  return v > 0 && std::isfinite(v) && std::isfinite(f) && f > 0;
}


template <class T>
bool read_all(std::string_view s, T& out) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

std::string number_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string quoted(std::string_view s) {
  std::string out(1, '\'');  // built by appends: GCC 12's -Wrestrict misfires on "'" + string
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 80) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : s[i];
  }
  out += '\'';
  return out;
}

double parse_number(std::string_view text, std::string_view what) {
  if (text.substr(0, 2) == "2^") {
    int k = 0;
    // 2^-1074 .. 2^1023: every power of two a double holds.
    if (read_all(text.substr(2), k) && k >= -1074 && k <= 1023) return std::ldexp(1.0, k);
    fail(what, quoted(text) + " is not a number (2^K needs an integer K in [-1074, 1023])");
  }
  double v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool whole = !text.empty() && r.ptr == text.data() + text.size();
  if (whole && r.ec == std::errc()) return v;
  // from_chars reports ERANGE for 1e-400 and 1e400 instead of rounding them to 0 or inf.
  if (whole && r.ec == std::errc::result_out_of_range) fail(what, quoted(text) + " is out of range (beyond a double)");
  fail(what, quoted(text) + " is not a number (a decimal or 2^K)");
}

double check_scale(double v, std::string_view what) {
  if (!positive_finite_float32(v))
    fail(what, "a scale must be a positive finite float32 (2^-149 .. 3.4e38), not " + number_text(v));
  return v;
}

double parse_scale(std::string_view text, std::string_view what) {
  const double v = parse_number(text, what);
  if (!positive_finite_float32(v))
    fail(what, quoted(text) + " is not a scale: a scale is a positive finite float32 (2^-149 .. 3.4e38)");
  return v;
}

long long parse_integer(std::string_view text, std::string_view what, long long lo, long long hi) {
  long long v = 0;
  bool ok = read_all(text, v);
  if (!ok && text.substr(0, 2) == "2^") {
    int k = 0;
    ok = read_all(text.substr(2), k) && k >= 0 && k <= 62;
    if (ok) v = 1LL << k;
  }
  if (!ok || v < lo || v > hi)
    fail(what, quoted(text) + " is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

bool parse_boolean(std::string_view text, std::string_view what) {
  if (text == "true" || text == "1" || text == "on" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "off" || text == "no") return false;
  fail(what, "is true or false, not " + quoted(text));
}

std::vector<float> parse_scales(std::string_view text, std::string_view what) {
  std::vector<float> out;
  const auto add = [&](float v) {
    if (out.size() >= max_scales) fail(what, "at most " + std::to_string(max_scales) + " scales");
    out.push_back(v);
  };
  for_each_item(text, [&](std::string_view item) {
    const std::size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      add(static_cast<float>(parse_scale(item, what)));
      return;
    }
    // 2^A:2^B or 2^A:2^B:STEP, every STEP-th power of two from 2^A up to 2^B.
    const std::size_t colon2 = item.find(':', colon + 1);
    const double a = parse_scale(item.substr(0, colon), what);
    const double b = parse_scale(item.substr(colon + 1, colon2 == std::string_view::npos ? item.npos : colon2 - colon - 1), what);
    const long long step =
        colon2 == std::string_view::npos
            ? 1
            : parse_integer(item.substr(colon2 + 1), std::string(what) + ": the step of " + quoted(item), 1, 999);
    int ea = 0, eb = 0;
    if (std::frexp(a, &ea) != 0.5 || std::frexp(b, &eb) != 0.5 || a > b)
      fail(what, "a range is 2^A:2^B[:STEP] with A <= B, not " + quoted(item));
    for (long long k = ea; k <= eb; k += step) add(std::ldexp(1.0f, int(k) - 1));
  });
  return out;
}

std::vector<std::size_t> parse_depths(std::string_view text, std::size_t max, std::string_view what) {
  std::vector<std::size_t> out;
  const long long hi_limit = (long long)std::min<std::size_t>(max, std::size_t{1} << 40);
  const auto depth = [&](std::string_view t) {
    const long long v = parse_integer(t, what, 1, std::numeric_limits<long long>::max());
    if (v > hi_limit) fail(what, "K = " + std::to_string(v) + " is beyond the inner dimension (" + std::to_string(max) + ")");
    return std::size_t(v);
  };
  for_each_item(text, [&](std::string_view item) {
    const std::size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      out.push_back(depth(item));
    } else {
      const std::size_t lo = depth(item.substr(0, colon)), hi = depth(item.substr(colon + 1));
      if (lo > hi) fail(what, "a range is LO:HI with LO <= HI, not " + quoted(item));
      for (std::size_t v = lo; v < hi; v *= 2) out.push_back(v);
      out.push_back(hi);
    }
    if (out.size() > max_depths) fail(what, "at most " + std::to_string(max_depths) + " depths");
  });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int check_threads(long long n, std::string_view what) {
  if (n < 0 || n > max_threads)
    fail(what, "a thread count is 0 (all cores) to " + std::to_string(max_threads) + ", not " + std::to_string(n));
  return int(n);
}

int parse_threads(std::string_view text, std::string_view what) {
  return int(parse_integer(text, what, 0, max_threads));
}

step_range parse_steps(std::string_view text, std::string_view what) {
  step_range r;
  if (text.empty()) return r;
  const auto number = [&](std::string_view t, std::int64_t& v) {
    if (!read_all(t, v)) fail(what, "expected A:B, A: or :B (training step indices), not " + quoted(text));
  };
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    number(text, r.first);
    r.last = r.first;
    return r;
  }
  if (colon > 0) number(text.substr(0, colon), r.first);
  if (colon + 1 < text.size()) number(text.substr(colon + 1), r.last);
  if (r.first > r.last) fail(what, "the range " + quoted(text) + " is empty (A > B)");
  return r;
}

format parse_format(std::string_view name, std::string_view what) {
  const auto id = find_format(name);
  if (!id) fail(what, "unknown format " + quoted(name) + " (known: " + std::string(format_names()) + ")");
  return builtin(*id);
}

std::vector<format> parse_formats(std::string_view names, std::string_view what) {
  std::vector<format> out;
  for_each_item(names, [&](std::string_view name) {
    const format f = parse_format(name, what);
    // Each at most once: a list naming one format 20,000 times (times the scales) ended in a
    // bare std::bad_alloc; the distinct formats are few (the built-ins).
    for (const format& g : out)
      if (std::string_view(g.name) == f.name) fail(what, "format " + quoted(f.name) + " named twice");
    out.push_back(f);
  });
  return out;
}

rounding parse_rounding(std::string_view name, std::string_view what) {
  const auto r = find_rounding(name);
  if (!r) fail(what, "unknown rounding mode " + quoted(name) + " (known: " + rounding_names() + ")");
  return *r;
}

profile parse_profile(std::string_view name, std::string_view what) {
  const auto p = find_profile(name);
  if (!p) fail(what, "unknown profile " + quoted(name) + " (known: " + profile_names() + ")");
  return *p;
}

overflow parse_overflow(std::string_view name, std::string_view what) {
  if (name == "inf") return overflow::infinity;
  if (name == "saturate") return overflow::saturate;
  fail(what, "unknown overflow policy " + quoted(name) + " (known: " + overflow_names() + ")");
}

std::string rounding_names() {
  std::string s;
  for (int i = 0; i <= int(rounding::sr); ++i) s += (i ? ", " : "") + std::string(name(static_cast<rounding>(i)));
  return s;
}

std::string profile_names() {
  std::string s;
  for (int i = 0; i <= int(profile::ml_dtypes); ++i) s += (i ? ", " : "") + std::string(name(static_cast<profile>(i)));
  return s;
}

std::string overflow_names() { return "inf, saturate"; }

std::string conversion::describe() const {
  std::string s = std::string(fmt.name) + " (rounding " + std::string(name(pol.round)) + ", overflow " +
                  std::string(name(pol.on_overflow)) + ", profile " + std::string(name(prof));
  if (pol.round == rounding::sr) s += ", seed " + std::to_string(pol.seed);
  return s + ")";
}

conversion resolve(const conversion_request& r, std::string_view default_format, std::string_view default_profile) {
  conversion c;
  const std::string_view f = r.format.empty() ? default_format : std::string_view(r.format);
  c.fmt = parse_format(f);
  c.prof = parse_profile(r.profile.empty() ? default_profile : std::string_view(r.profile));
  c.pol = profile_policy(c.prof, c.fmt);
  if (!r.rounding.empty()) c.pol.round = parse_rounding(r.rounding);
  if (!r.overflow.empty()) c.pol.on_overflow = parse_overflow(r.overflow);
  c.pol.seed = r.seed;
  return c;
}

void require_deterministic(const conversion& c, std::string_view who) {
  if (!c.fmt.is_signed())
    throw option_error(std::string(who) + ": " + c.fmt.name + " is an unsigned scale format: it needs an element format");
  if (c.pol.round == rounding::sr)
    throw option_error(std::string(who) + ": --rounding sr gives no fixed class per value: use a deterministic rounding");
}

// ---- the policy grammar ----

std::pair<std::string_view, std::string_view> split_spec(std::string_view spec) {
  const std::size_t colon = spec.find(':');
  if (colon == std::string_view::npos) return {spec, {}};
  return {spec.substr(0, colon), spec.substr(colon + 1)};
}

namespace {

std::string key_names(const spec_key& k) {
  std::string s;
  for (const auto n : k.names) {
    if (!s.empty()) s += '|';
    s += n;
  }
  return s;
}

std::string label(std::string_view policy, std::string_view key) { return std::string(policy) + ": " + std::string(key); }

}  // namespace

std::string describe_keys(std::span<const spec_key> keys) {
  std::string s;
  for (const auto& k : keys) {
    if (!s.empty()) s += ",";
    s += key_names(k);
    if (k.type != spec_key::kind::boolean) {
      s += '=';
      s += k.help.empty() ? std::string_view("V") : k.help;
    }
  }
  return s;
}

void parse_spec_keys(std::string_view policy, std::string_view rest, std::span<const spec_key> keys,
                     const std::function<void(std::string_view)>& bare) {
  std::vector<bool> seen(keys.size(), false);
  const std::string who(policy);
  if (rest.empty() && !bare) return;
  bool first = true;
  for_each_item(rest, [&](std::string_view item) {
    if (item.empty()) {
      if (rest.empty()) return;  // "name:" with nothing after it (its only item): as "name"
      throw option_error(who + ": an empty item in " + quoted(rest));
    }
    const std::size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    if (eq == std::string_view::npos && first && bare) {
      bare(item);
      first = false;
      return;
    }
    first = false;
    const auto it = std::find_if(keys.begin(), keys.end(), [&](const spec_key& k) {
      return std::find(k.names.begin(), k.names.end(), key) != k.names.end();
    });
    if (it == keys.end()) {
      std::string known;
      for (const auto& k : keys) known += (known.empty() ? "" : ", ") + key_names(k);
      throw option_error(who + ": unknown key " + quoted(key) + (known.empty() ? " (it takes none)" : " (known: " + known + ")"));
    }
    const std::size_t i = std::size_t(it - keys.begin());
    if (seen[i]) throw option_error(who + ": " + quoted(it->names.front()) + " given twice");
    seen[i] = true;
    if (eq == std::string_view::npos) {
      if (it->type != spec_key::kind::boolean) throw option_error(who + ": " + quoted(key) + " needs a value (" + quoted(key) + "=...)");
      it->set("true");
    } else {
      it->set(item.substr(eq + 1));
    }
  });
}

std::function<void(std::string_view)> set_number(std::string_view policy, std::string_view key, double& out) {
  return [l = label(policy, key), &out](std::string_view v) { out = parse_number(v, l); };
}

std::function<void(std::string_view)> set_scale(std::string_view policy, std::string_view key, double& out) {
  return [l = label(policy, key), &out](std::string_view v) { out = parse_scale(v, l); };
}

std::function<void(std::string_view)> set_integer(std::string_view policy, std::string_view key, int& out, long long lo,
                                                  long long hi) {
  return [l = label(policy, key), &out, lo, hi](std::string_view v) { out = int(parse_integer(v, l, lo, hi)); };
}

std::function<void(std::string_view)> set_boolean(std::string_view policy, std::string_view key, bool& out) {
  return [l = label(policy, key), &out](std::string_view v) { out = parse_boolean(v, l); };
}

std::function<void(std::string_view)> set_choice(std::string_view policy, std::string_view key, int& out,
                                                 std::vector<std::string_view> choices) {
  return [l = label(policy, key), &out, choices = std::move(choices)](std::string_view v) {
    for (std::size_t i = 0; i < choices.size(); ++i)
      if (choices[i] == v) {
        out = int(i);
        return;
      }
    std::string known;
    for (const auto c : choices) known += (known.empty() ? "" : ", ") + std::string(c);
    throw option_error(l + ": " + quoted(v) + " is not one of " + known);
  };
}

}  // namespace fpscope
