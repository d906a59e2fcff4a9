// 15. The one option layer (fpscope/options.hpp): numbers read one way everywhere, scales checked
// in float32, the "name:key=value,flag" grammar of every recipe, and the recipe table. The
// front ends run the shared table of bad values (tests/options_table.py); these are the
// parser's own rules.
#include <cmath>

#include "common.hpp"
#include "fpscope/options.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/scaler.hpp"

using namespace fpscope;

TEST_CASE("options: numbers, scales, integers", "[options]") {
  CHECK(parse_number("2^10", "x") == 1024);
  CHECK(parse_number("2^-1074", "x") == std::ldexp(1.0, -1074));
  CHECK(parse_number("0.1", "x") == 0.1);
  CHECK(parse_number("-3", "x") == -3);
  for (const char* bad : {"", " 1", "1 ", "+1", "0x10", "2^", "2^1.5", "2^1024", "1e400", "1e-400", "1,0", "one"})
    CHECK_THROWS_AS(parse_number(bad, "x"), option_error);
  CHECK_THROWS_WITH(parse_number("1e-400", "--scale"), "--scale: '1e-400' is out of range (beyond a double)");
  CHECK_THROWS_WITH(parse_number("a\nb", "--scale"), "--scale: 'a?b' is not a number (a decimal or 2^K)");

  CHECK(parse_scale("2^-149") == std::ldexp(1.0, -149));
  CHECK(parse_scale("3.4e38") == 3.4e38);
  CHECK(parse_scale("0.1") == 0.1);  // the double, unrounded: cast multiplies in double
  for (const char* bad : {"0", "-1", "nan", "inf", "3.5e38", "1e-46", "2^128", "2^-150"})
    CHECK_THROWS_AS(parse_scale(bad), option_error);
  CHECK_THROWS_AS(check_scale(std::nan("")), option_error);
  CHECK(check_scale(0.5) == 0.5);

  CHECK(parse_integer("2^10", "n", 0, 2000) == 1024);
  CHECK(parse_integer("-64", "n", -64, 64) == -64);
  for (const char* bad : {"1.5", "65", "1e3", " 1", "2^63"}) CHECK_THROWS_AS(parse_integer(bad, "n", -64, 64), option_error);
  CHECK(parse_boolean("off", "b") == false);
  CHECK_THROWS_AS(parse_boolean("maybe", "b"), option_error);

  CHECK(check_threads(0) == 0);
  CHECK(check_threads(max_threads) == max_threads);
  CHECK_THROWS_AS(check_threads(-1), option_error);
  CHECK_THROWS_AS(check_threads(max_threads + 1), option_error);
  CHECK(parse_threads("2") == 2);
  CHECK_THROWS_AS(parse_threads("100000"), option_error);
}

TEST_CASE("options: scale lists and step ranges", "[options]") {
  CHECK(parse_scales("1,2^3,0.5") == std::vector<float>{1, 8, 0.5});
  CHECK(parse_scales("2^0:2^4:2") == std::vector<float>{1, 4, 16});
  CHECK(parse_scales("2^-2:2^0") == std::vector<float>{0.25, 0.5, 1});
  CHECK(parse_scales("0.1").front() == 0.1f);
  for (const char* bad : {"", "1,", "2^4:2^0", "3:8", "2^0:2^4:0", "2^0:2^4:x", "1:2:3:4"})
    CHECK_THROWS_AS(parse_scales(bad), option_error);
  CHECK_THROWS_AS(parse_scales("2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,"
                               "2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,"
                               "2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127,2^-126:2^127"),
                  option_error);  // more than max_scales

  const auto all = parse_steps("");
  CHECK(all.contains(std::numeric_limits<std::int64_t>::min()));
  CHECK(all.contains(std::numeric_limits<std::int64_t>::max()));
  const auto r = parse_steps("3:5");
  CHECK((r.first == 3 && r.last == 5));
  CHECK(parse_steps("7").first == 7);
  CHECK(parse_steps("7").last == 7);
  CHECK(parse_steps(":5").last == 5);
  CHECK(parse_steps("-2:").first == -2);
  for (const char* bad : {"5:2", "a:b", "1:2:3", "1:x", " 1:2"}) CHECK_THROWS_AS(parse_steps(bad), option_error);
}

TEST_CASE("options: names and conversions resolve as the profile says", "[options]") {
  const conversion c = resolve({"e4m3", "cuda", "", "", 0});
  CHECK(c.fmt.name == std::string("e4m3"));
  CHECK(c.pol.on_overflow == overflow::saturate);  // cuda's fp8: satfinite
  const conversion d = resolve({"e4m3", "cuda", "rtz", "inf", 7});
  CHECK(d.pol.round == rounding::rtz);
  CHECK(d.pol.on_overflow == overflow::infinity);
  CHECK(d.pol.seed == 7);
  CHECK(d.describe() == "e4m3 (rounding rtz, overflow inf, profile cuda)");
  // Empty fields take the caller's defaults (a recipe's format and profile).
  const conversion e = resolve({}, "e5m2", "cuda");
  CHECK(e.fmt.name == std::string("e5m2"));
  CHECK(e.prof == profile::cuda);
  CHECK_THROWS_AS(resolve({}), option_error);  // no format at all
  CHECK_THROWS_WITH(parse_overflow("clamp"), "--overflow: unknown overflow policy 'clamp' (known: inf, saturate)");
  CHECK_THROWS_AS(require_deterministic(resolve({"fp16", "", "sr", "", 0}), "hist"), option_error);
  CHECK_THROWS_AS(require_deterministic(resolve({"e8m0", "", "", "", 0}), "hist"), option_error);
}

TEST_CASE("options: the policy grammar", "[options]") {
  double a = 0, b = 0;
  bool flag = false;
  int choice = -1;
  const std::vector<spec_key> keys{{{"alpha", "a"}, spec_key::kind::number, set_number("p", "alpha", a), "1"},
                                   {{"beta"}, spec_key::kind::number, set_scale("p", "beta", b), "2^3"},
                                   {{"power_2_scale", "pow2"}, spec_key::kind::boolean, set_boolean("p", "power_2_scale", flag)},
                                   {{"mode"}, spec_key::kind::choice, set_choice("p", "mode", choice, {"x", "y"}), "x|y"}};
  parse_spec_keys("p", "a=2^3,pow2,mode=y", keys);
  CHECK(a == 8);
  CHECK(flag);
  CHECK(choice == 1);
  parse_spec_keys("p", "", keys);  // nothing given: nothing set
  CHECK_THROWS_WITH(parse_spec_keys("p", "alpha=1,a=2", keys), "p: 'alpha' given twice");
  CHECK_THROWS_WITH(parse_spec_keys("p", "pow2,power_2_scale=0", keys), "p: 'power_2_scale' given twice");
  CHECK_THROWS_WITH(parse_spec_keys("p", "gamma=1", keys),
                    "p: unknown key 'gamma' (known: alpha|a, beta, power_2_scale|pow2, mode)");
  CHECK_THROWS_WITH(parse_spec_keys("p", "alpha", keys), "p: 'alpha' needs a value ('alpha'=...)");
  CHECK_THROWS_AS(parse_spec_keys("p", "alpha=1,,beta=2", keys), option_error);
  CHECK_THROWS_AS(parse_spec_keys("p", "beta=1e39", keys), option_error);  // a float32 value
  CHECK_THROWS_AS(parse_spec_keys("p", "mode=z", keys), option_error);
  CHECK(describe_keys(keys) == "alpha|a=1,beta=2^3,power_2_scale|pow2,mode=x|y");
  CHECK(split_spec("te-delayed:margin=1") == std::pair<std::string_view, std::string_view>{"te-delayed", "margin=1"});
  CHECK(split_spec("torch").second.empty());
}

TEST_CASE("options: every recipe of the table parses its keys and describes itself", "[options]") {
  const auto table = recipes();
  REQUIRE(table.size() == 14);  // 8, and the GEMM-operand block recipes of issue 16
  for (const auto& r : table) {
    INFO(r.name);
    const auto rec = make_recipe(r.name == std::string_view("static") ? "static:2^10" : std::string(r.name));
    CHECK_FALSE(rec->describe().empty());
    CHECK_FALSE(r.summary.empty());
    rec->bind(resolve({}, rec->default_format(), rec->default_profile()));
    // Any other key is refused, by name.
    CHECK_THROWS_AS(make_recipe(std::string(r.name) + ":no_such_key=1"), option_error);
  }
  CHECK_THROWS_WITH(make_recipe("adam"),
                    "unknown policy 'adam' (known: static, torch, deepspeed, megatron, te-delayed, te-current, mx, block, "
                    "mxfp8, mxfp6, mxfp4, nvfp4, fp8-block, deepseek)");
  // The loss scalers' factory is the recipes' grammar too.
  CHECK(make_loss_scaler("torch:init=2^3")->scale() == 8);
  CHECK_THROWS_AS(make_loss_scaler("torch:init=2^3,init=4"), option_error);
  // Upstream names and aliases reach the same parameters.
  CHECK(make_recipe("te-delayed:amax_history_len=16,amax_compute_algo=most_recent,margin=2^1")->describe() ==
        make_recipe("te-delayed:history=16,algo=most_recent,margin=2")->describe());
  CHECK(make_recipe("mx:scaling_mode=rceil")->describe() == make_recipe("mx:rounding=rceil")->describe());
  // mx over fp16 (no table of element formats: the format's own facts).
  auto mx = make_recipe("mx:scaling_mode=even");
  CHECK_NOTHROW(mx->bind(resolve({"fp16", "", "", "", 0})));
  CHECK_THROWS_AS(mx->bind(resolve({"e8m0", "", "", "", 0})), option_error);
  // The GEMM-operand recipes choose their element format by key; another --format is refused.
  auto mxfp8 = make_recipe("mxfp8:elem=e5m2");
  CHECK(mxfp8->default_format() == "e5m2");
  CHECK_NOTHROW(mxfp8->bind(resolve({"e5m2", "", "", "", 0})));
  CHECK_THROWS_AS(mxfp8->bind(resolve({"e4m3", "", "", "", 0})), option_error);
}
