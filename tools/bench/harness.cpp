// The benchmarks' harness (harness.hpp): options, data, interleaved rounds, the peers' process,
// the report, the OpenMP crossover sweep.
#include "harness.hpp"

#include <fpscope/cpu.hpp>

#include <omp.h>

#include <bit>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace fpscope::bench {

// ------------------------------------------------------------------------------------------
// Statistics

double median(std::vector<double> v) {
  std::erase_if(v, [](double x) { return !std::isfinite(x); });
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double minimum(const std::vector<double>& v) {
  double m = NAN;
  for (double x : v)
    if (std::isfinite(x) && !(x >= m)) m = x;
  return m;
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;  // NaN when a round is missing: no total
  return v.empty() ? NAN : s;
}

ratio time_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (std::isfinite(a[i]) && std::isfinite(b[i]) && a[i] > 0) r.push_back(b[i] / a[i]);
  ratio out;
  out.median = median(r);
  out.best = out.ok() ? minimum(b) / minimum(a) : NAN;
  return out;
}

std::optional<std::size_t> winning_from(const std::vector<std::size_t>& sizes,
                                        const std::function<bool(std::size_t)>& wins) {
  std::optional<std::size_t> from;
  for (auto it = sizes.rbegin(); it != sizes.rend() && wins(*it); ++it) from = *it;
  return from;
}

// ------------------------------------------------------------------------------------------
// Time

double seconds(clk::duration d) { return std::chrono::duration<double>(d).count(); }

namespace {

double cpu_seconds(clockid_t which) {
  timespec ts{};
  clock_gettime(which, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Options

namespace {

long long whole_number(const std::string& v) {
  std::size_t used = 0;
  const long long x = std::stoll(v, &used);
  if (used != v.size()) throw std::invalid_argument("not a whole number: " + v);
  return x;
}

std::string usage(const std::string& program, const std::string& about, const std::vector<option>& all) {
  std::string u = "usage: " + program, line;
  std::size_t width = 0;
  for (const option& o : all) {
    const std::string word = " [" + o.name + (o.metavar.empty() ? "" : " " + o.metavar) + "]";
    if (u.size() - u.rfind('\n') + word.size() > 96 && u.back() != '\n') u += "\n        ";
    u += word;
    width = std::max(width, o.name.size() + (o.metavar.empty() ? 0 : o.metavar.size() + 1));
  }
  u += "\n" + about;
  for (const option& o : all) {
    const std::string left = o.name + (o.metavar.empty() ? "" : " " + o.metavar);
    std::string help = o.help;
    for (std::size_t p = help.find('\n'); p != std::string::npos; p = help.find('\n', p + 1))
      help.insert(p + 1, std::string(width + 4, ' '));
    u += fmt::format("  {:<{}}  {}\n", left, width, help);
  }
  return u;
}

}  // namespace

option flag(std::string name, std::string help, std::function<void()> set) {
  return {std::move(name), "", std::move(help), [set = std::move(set)](const std::string&) { set(); }};
}

option count_option(std::string name, std::string help, std::function<void(int)> set, int now, int lo, int hi) {
  auto check = [name, lo, hi, set = std::move(set)](const std::string& v) {
    const long long x = whole_number(v);
    if (x < lo || x > hi)
      throw std::invalid_argument(hi == INT_MAX ? fmt::format("{} must be >= {}", name, lo)
                                                : fmt::format("{} must be in {}..{}", name, lo, hi));
    set(int(x));
  };
  return {std::move(name), "N", fmt::format("{} (default {})", help, now), std::move(check)};
}

option count_option(std::string name, std::string help, int& v, int lo, int hi) {
  return count_option(std::move(name), std::move(help), [&v](int x) { v = x; }, v, lo, hi);
}

option size_option(std::string name, std::string help, std::size_t& v) {
  auto check = [name, &v](const std::string& s) {
    const long long x = whole_number(s);
    if (x < 64) throw std::invalid_argument(name + " must be >= 64");
    v = std::size_t(x);
  };
  return {std::move(name), "N", fmt::format("{} (default {})", help, v), std::move(check)};
}

option quick_option(options& o, std::string help, std::size_t mem_n, std::function<void()> also) {
  return flag("--quick", std::move(help), [&o, mem_n, also = std::move(also)] {
    o.rounds_cache = 5;
    o.rounds_mem = 3;
    o.mem_n = mem_n;
    also();
  });
}

std::string default_python() {
  const std::string venv = FPSCOPE_BENCH_PYTHON;
  return access(venv.c_str(), X_OK) == 0 ? venv : std::string("/usr/bin/python3");
}

std::string peers_file(const std::string& file) { return std::string(FPSCOPE_BENCH_DIR) + "/" + file; }

void parse(int argc, char** argv, options& o, const std::string& about, const std::vector<option>& own) {
  for (int i = 0; i < argc; ++i) {
    if (i) o.command += ' ';
    o.command += argv[i];
  }
  std::vector<option> all{
      flag("--json", "results as JSON on stdout (progress on stderr) instead of the tables", [&o] { o.json = true; }),
      count_option("--rounds", "interleaved rounds for the in-cache size", o.rounds_cache),
      count_option("--mem-rounds", "rounds for the from-memory size", o.rounds_mem),
      size_option("--cache-n", "in-cache element count", o.cache_n),
      size_option("--mem-n", "from-memory element count", o.mem_n),
      {"--min-ms", "MS", fmt::format("shortest in-cache sample; calls repeat until it is reached (default {})", o.min_ms),
       [&o](const std::string& v) {
         std::size_t used = 0;
         const double x = std::stod(v, &used);
         if (used != v.size() || !(x >= 0)) throw std::invalid_argument("--min-ms must be a number >= 0");
         o.min_ms = x;
       }},
      flag("--no-peers", "do not start the peers (they print as n/a (SKIPPED))", [&o] { o.peers = false; }),
      {"--python", "P", "interpreter for the peers (default: the project venv if present,\nelse /usr/bin/python3)",
       [&o](const std::string& v) { o.python = v; }},
      {"--peers", "P", "the peers script (default " + o.script.substr(o.script.find_last_of('/') + 1) + ")",
       [&o](const std::string& v) { o.script = v; }},
  };
  for (const option& x : own) {
    auto same = std::find_if(all.begin(), all.end(), [&](const option& a) { return a.name == x.name; });
    if (same != all.end()) *same = x;
    else all.push_back(x);
  }
  const std::string program = std::filesystem::path(argv[0]).filename().string();
  auto fail = [&](const std::string& why) {
    fmt::print(stderr, "{}: {}\n{}", argv[0], why, usage(program, about, all));
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      fmt::print("{}", usage(program, about, all));
      std::exit(0);
    }
    auto o_it = std::find_if(all.begin(), all.end(), [&](const option& x) { return x.name == a; });
    if (o_it == all.end()) fail("unknown option " + a);
    std::string value;
    if (!o_it->metavar.empty()) {
      if (i + 1 >= argc) fail(a + " needs a value");
      value = argv[++i];
    }
    try {
      o_it->set(value);
    } catch (const std::invalid_argument& e) {
      fail(std::string(e.what()).rfind("--", 0) == 0 ? e.what() : a + ": bad value " + value);
    } catch (const std::out_of_range&) {
      fail(a + ": value out of range: " + value);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Formats

std::size_t format_index(std::string_view name) {
  std::size_t i = 0;
  while (i < formats.size() && name != formats[i].name) ++i;
  return i;
}

// ------------------------------------------------------------------------------------------
// Data

void* aligned_zeroed(std::size_t bytes) {
  const std::size_t b = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, b);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, b);
  return p;
}

void free_memory::operator()(void* p) const { std::free(p); }

bool cpu_has(std::string_view features) {
  const cpu_features& c = cpu();
  while (!features.empty()) {
    const std::size_t comma = std::min(features.find(','), features.size());
    const std::string_view f = features.substr(0, comma);
    const bool has = f == "f16c" ? c.f16c : f == "avx2" ? c.avx2 : f == "fma" ? c.fma : f == "avx512f" ? c.avx512f
                                                                   : f == "avx512bf16" && c.avx512bf16;
    if (!has) return false;
    features.remove_prefix(std::min(comma + 1, features.size()));
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// Items

item& item_set::add(item it) {
  items_.push_back(std::move(it));
  item& ref = items_.back();
  by_id_[ref.id] = &ref;
  return ref;
}

const item* item_set::find(const std::string& id) const {
  auto i = by_id_.find(id);
  return i == by_id_.end() ? nullptr : i->second;
}

const item& item_set::get(const std::string& id) const {
  const item* it = find(id);
  if (!it) throw std::out_of_range("no benchmark item " + id);
  return *it;
}

versus versus_fastest(const item& me, const item_set& items, std::size_t rounds,
                      const std::function<bool(const item&)>& pick, const std::string& none) {
  std::vector<double> t(rounds, NAN);  // per round, the fastest picked item's sample
  bool any = false;
  std::string na;
  for (const item& it : items) {
    if (!pick(it)) continue;
    if (!it.na.empty()) {
      na = it.na;
      continue;
    }
    any = true;
    for (std::size_t r = 0; r < rounds && r < it.t.size(); ++r)
      if (std::isfinite(it.t[r]) && !(it.t[r] >= t[r])) t[r] = it.t[r];
  }
  if (!any) return {ratio{}, na.empty() ? none : na};
  return {time_ratio(me.t, t), ""};
}

std::function<bool(const item&)> peers_of(const std::string& lib, const std::function<bool(const item&)>& also) {
  return [lib = lib + ".", also](const item& it) {
    return it.group == "peer" && it.threads == 1 && it.peer.starts_with(lib) && also(it);
  };
}

// ------------------------------------------------------------------------------------------
// Cells

std::string versus::cell(const target& t, int digits) const {
  return r.ok() || na.empty() ? ratio_cell(r, t, digits) : na;
}

std::string giga(double s_per_call, std::size_t n) {
  return std::isfinite(s_per_call) ? fmt::format("{:.2f}", double(n) / s_per_call * 1e-9) : "n/a";
}

std::string rate_cell(const item& it, std::size_t n) {
  if (!it.na.empty()) return it.na;
  return fmt::format("{} ({})", giga(median(it.t), n), giga(minimum(it.t), n));
}

std::string ms_cell(const item& it) {
  if (!it.na.empty()) return it.na;
  return fmt::format("{:.3f} ({:.3f})", median(it.t) * 1e3, minimum(it.t) * 1e3);
}

std::string verdict(double median_v, double best, const target& t) {
  if (!std::isfinite(t.value) || !std::isfinite(median_v)) return "";
  auto meets = [&](double x) { return t.at_least ? x >= t.value : x <= t.value; };
  const std::string v = meets(median_v) ? " PASS" : std::isfinite(best) && meets(best) ? " MISS (best passes)" : " MISS";
  return t.info ? v + " (info)" : v;
}

std::string ratio_cell(const ratio& r, const target& t, int digits) {
  if (!r.ok()) return "n/a";
  return fmt::format("{:.{}f} ({:.{}f})", r.median, digits, r.best, digits) + verdict(r.median, r.best, t);
}

std::string table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) w[c] = head[c].size();
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string l = "|";
    for (std::size_t c = 0; c < w.size(); ++c) l += fmt::format(" {:<{}} |", c < r.size() ? r[c] : "", w[c]);
    return l + "\n";
  };
  std::string t = line(head);
  std::string sep = "|";
  for (std::size_t c = 0; c < w.size(); ++c) sep += std::string(w[c] + 2, '-') + "|";
  t += sep + "\n";
  for (const auto& r : rows) t += line(r);
  return t;
}

std::string peers_table(const item_set& items, std::size_t n, const std::string& dimension, const std::string& rate_head) {
  std::vector<std::vector<std::string>> rows;
  for (const item& it : items)
    if (it.group == "peer")
      rows.push_back({it.format, dimension == "op" ? it.op : it.input, it.peer, std::to_string(it.threads), it.impl,
                      rate_cell(it, n)});
  return table({"format", dimension, "peer", "threads", "call", rate_head}, rows);
}

json item_json(const item& it, std::size_t n, const std::string& unit) {
  json j = {{"id", it.id}, {"group", it.group}, {"impl", it.impl}, {"threads", it.threads}, {"n", n}};
  for (const auto& [key, v] : {std::pair{"format", &it.format}, {"op", &it.op}, {"input", &it.input}})
    if (!v->empty()) j[key] = *v;
  if (!it.na.empty()) {
    j["na"] = it.na;
    return j;
  }
  j["samples_s"] = it.t;
  j["median_s"] = median(it.t);
  j["min_s"] = minimum(it.t);
  j["median_" + unit + "_per_s"] = double(n) / median(it.t);
  j["best_" + unit + "_per_s"] = double(n) / minimum(it.t);
  if (!it.cpu.empty()) j["cpu_share_median"] = median(it.cpu);
  return j;
}

// ------------------------------------------------------------------------------------------
// The peers' process

/// A `python -u peer_serve.py SCRIPT --serve` child; request() sends one JSON line and reads
/// one back.
class peer_set::process {
 public:
  ~process() { stop(); }

  bool start(const std::string& python, const std::string& script, std::string& why) {
    const std::string serve = peers_file("peer_serve.py");
    for (const auto& [path, what] : {std::pair{&python, "no python at "}, {&serve, "no peer server at "},
                                     {&script, "no peers script at "}})
      if (access(path->c_str(), path == &python ? X_OK : R_OK) != 0) {
        why = what + *path + (path == &python ? " (run tools/setup.sh)" : "");
        return false;
      }
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0) return why = "pipe failed", false;
    if (pipe(from_child) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return why = "pipe failed", false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_child[1]);
    posix_spawn_file_actions_addclose(&fa, from_child[0]);
    std::string a0 = python, a1 = "-u", a2 = serve, a3 = script, a4 = "--serve";
    char* args[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
    const int rc = posix_spawn(&pid_, python.c_str(), &fa, nullptr, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) {
      close(to_child[1]);
      close(from_child[0]);
      pid_ = -1;
      why = "cannot start " + python + ": " + std::strerror(rc);
      return false;
    }
    name_ = script.substr(script.find_last_of('/') + 1);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
    return true;
  }

  // One request, one reply; nullopt (with why) if the process is gone or the reply is bad.
  std::optional<json> request(const json& req, std::string& why) {
    if (!to_ || !from_) return why = name_ + " is not running", std::nullopt;
    const std::string line = req.dump() + "\n";
    if (std::fputs(line.c_str(), to_) < 0 || std::fflush(to_) != 0) {
      why = name_ + " exited";
      stop();
      return std::nullopt;
    }
    char* buf = nullptr;
    std::size_t cap = 0;
    const ssize_t got = getline(&buf, &cap, from_);
    std::string reply = got > 0 ? std::string(buf, std::size_t(got)) : std::string();
    std::free(buf);
    if (got <= 0) {
      why = name_ + " exited (see its traceback above)";
      stop();
      return std::nullopt;
    }
    try {
      json j = json::parse(reply);
      if (j.contains("error")) {
        why = j["error"].get<std::string>();
        return std::nullopt;
      }
      return j;
    } catch (const std::exception& e) {
      why = "bad reply from " + name_ + ": " + e.what();
      return std::nullopt;
    }
  }

  bool running() const { return to_ != nullptr; }

  void stop() {
    if (to_) {
      std::fputs("{\"cmd\": \"quit\"}\n", to_);
      std::fclose(to_);
      to_ = nullptr;
    }
    if (from_) {
      std::fclose(from_);
      from_ = nullptr;
    }
    if (pid_ > 0) {
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  std::string name_ = "the peers script";
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

peer_set::peer_set() = default;
peer_set::~peer_set() { stop(); }

bool peer_set::up() const { return py_ && py_->running() && !hello_.is_null(); }

void peer_set::start(const options& o, const std::vector<peer_desc>& known) {
  if (!o.peers) {
    why_ = "--no-peers";
  } else {
    char tmpl[] = "/tmp/fpscope-bench-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error(fmt::format("cannot create a temporary directory: {}", std::strerror(errno)));
    tmp_ = tmpl;
    py_ = std::make_unique<process>();
    if (py_->start(o.python, o.script, why_))
      if (auto h = py_->request({{"cmd", "hello"}}, why_)) hello_ = *h;
  }
  if (!up()) {
    hello_ = nullptr;
    for (peer_desc p : known) {
      p.why = why_;
      peers_.push_back(std::move(p));
    }
    progress("peers: all SKIPPED ({})\n", why_);
    return;
  }
  auto text = [](const json& p, const char* key) { return p.value(key, std::string()); };
  for (const auto& p : hello_["peers"])
    peers_.push_back({text(p, "id"), text(p, "format"), text(p, "op"), text(p, "lib"), text(p, "api"), "",
                      p.value("threaded", false)});
  for (const auto& p : hello_["skipped"])
    peers_.push_back({text(p, "id"), text(p, "format"), text(p, "op"), text(p, "lib"), "", text(p, "why"), false});
}

std::optional<json> peer_set::request(const json& req, std::string& why) {
  if (!py_) return why = why_, std::nullopt;
  return py_->request(req, why);
}

bool peer_set::load(const std::string& name, const std::vector<peer_array>& arrays) {
  std::string why = why_;
  bool ok = up();
  if (ok) {
    json paths = json::array(), sums = json::array(), xors = json::array();
    for (std::size_t k = 0; k < arrays.size(); ++k) {
      const peer_array& a = arrays[k];
      const std::string path = (tmp_ / fmt::format("{}-{}.npy", name, k)).string();
      const std::size_t bytes = npy_itemsize(a.dtype);
      npy_writer w(path, a.dtype, {a.n});
      w.write(a.data, a.n * bytes);
      w.commit();
      // The checksum the peers verify: sum and xor of the array's words (its own elements).
      std::uint64_t sum = 0;
      std::uint32_t xr = 0;
      const auto* p = static_cast<const unsigned char*>(a.data);
      for (std::size_t i = 0; i < a.n; ++i) {
        std::uint32_t word = 0;
        std::memcpy(&word, p + i * bytes, bytes);  // little-endian
        sum += word;
        xr ^= word;
      }
      paths.push_back(path);
      sums.push_back(sum);
      xors.push_back(xr);
    }
    ok = request({{"cmd", "load"}, {"name", name}, {"paths", paths}, {"sums", sums}, {"xors", xors}}, why).has_value();
    for (const auto& p : paths) std::filesystem::remove(p.get<std::string>());
  }
  if (!ok) load_failed_[name] = why;
  return ok;
}

void peer_set::forget(const std::string& name) {
  std::string why;
  if (up()) request({{"cmd", "forget"}, {"name", name}}, why);
}

std::optional<std::vector<std::uint32_t>> peer_set::output(const std::string& id, const std::string& data,
                                                           std::string& why) {
  const std::string path = (tmp_ / (id + ".npy")).string();
  if (!request({{"cmd", "output"}, {"data", data}, {"peer", id}, {"path", path}}, why)) return std::nullopt;
  std::optional<std::vector<std::uint32_t>> codes;
  try {
    npy_reader r(path);
    if (r.dtype() == npy_dtype::u2) {
      auto v = r.values<std::uint16_t>();
      codes.emplace(v.begin(), v.end());
    } else {
      auto v = r.values<std::uint8_t>();
      codes.emplace(v.begin(), v.end());
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  std::filesystem::remove(path);
  return codes;
}

std::vector<item> peer_set::items(const std::function<std::string(const peer_desc&)>& data_of,
                                  const std::string& input) const {
  std::vector<item> out;
  for (const peer_desc& p : peers_)
    for (int th : {1, 2}) {
      if (th == 2 && !p.threaded) continue;
      item it;
      it.id = input.empty() ? fmt::format("peer/{}/t{}", p.id, th) : fmt::format("peer/{}/{}/t{}", p.id, input, th);
      it.group = "peer";
      it.format = p.format;
      it.op = p.op;
      it.input = input;
      it.impl = p.api.empty() ? p.id : p.api;
      it.threads = th;
      it.peer = p.id;
      it.data = data_of(p);
      const auto failed = load_failed_.find(it.data);
      if (!p.why.empty()) it.na = "n/a (SKIPPED: " + p.why + ")";
      else if (!up()) it.na = "n/a (SKIPPED: " + why_ + ")";
      else if (failed != load_failed_.end()) it.na = "n/a (SKIPPED: " + failed->second + ")";
      out.push_back(std::move(it));
    }
  return out;
}

void peer_set::stop() {
  if (py_) py_->stop();
  if (!tmp_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
    tmp_.clear();
  }
}

// ------------------------------------------------------------------------------------------
// A run

namespace {

json machine() {
  json m;
  std::ifstream ci("/proc/cpuinfo");
  std::string line, model, flags;
  while (std::getline(ci, line)) {
    if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = line.substr(line.find(':') + 2);
  }
  std::string rel;  // the flags that matter here
  for (std::size_t p = 0; p < flags.size();) {
    const std::size_t q = std::min(flags.find(' ', p), flags.size());
    const std::string fl = flags.substr(p, q - p);
    if (fl == "f16c" || fl == "avx" || fl == "avx2" || fl == "fma" || fl.rfind("avx512", 0) == 0 ||
        fl.rfind("amx", 0) == 0 || fl == "avx_vnni")
      rel += (rel.empty() ? "" : " ") + fl;
    p = q + 1;
  }
  std::ifstream mi("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  while (mi >> key) {
    if (key == "MemTotal:") {
      mi >> kib;
      break;
    }
    std::getline(mi, line);
  }
  m["cpu"] = model;
  m["cpus_online"] = std::thread::hardware_concurrency();
  m["ram_gib"] = double(kib) / (1024.0 * 1024.0);
  m["flags"] = rel;
  m["avx512_bf16"] = cpu_has("avx512bf16");
  m["compiler"] = FPSCOPE_BENCH_CXX;
  m["march"] = FPSCOPE_BENCH_MARCH;
  m["build"] = FPSCOPE_BENCH_BUILD;
  m["openmp"] = _OPENMP;
  m["omp_max_threads"] = omp_get_max_threads();
  double la[3] = {0, 0, 0};
  if (getloadavg(la, 3) == 3) m["loadavg_start"] = {la[0], la[1], la[2]};
  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  m["date"] = date;
  return m;
}

}  // namespace

session::session(std::string name, options o) : name_(std::move(name)), opt_(std::move(o)), start_(cpu_now()) {}

session::cpu_use session::cpu_now() {
  cpu_use c;
  std::ifstream f("/proc/stat");
  std::string cpu;
  double v[8] = {};  // user nice system idle iowait irq softirq steal
  f >> cpu;
  for (double& x : v) f >> x;
  const double hz = double(sysconf(_SC_CLK_TCK));
  c.busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
  c.steal = v[7] / hz;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {  // children: the peers' process, once stopped
    rusage ru{};
    getrusage(who, &ru);
    c.ours += double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  }
  c.wall = std::chrono::duration<double>(clk::now().time_since_epoch()).count();
  return c;
}

double session::sample_cxx(item& it, double min_s) {
  if (it.threads > 1 && warm_s > 0) {  // wake the OpenMP worker, asleep since the settle pause
    const auto w0 = clk::now();
    do it.run();
    while (seconds(clk::now() - w0) < warm_s);
    if (it.sampled) it.sampled(0);
  }
  const double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID), p0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const auto t0 = clk::now();
  int calls = 0;
  double el = 0;
  do {
    it.run();
    ++calls;
    el = seconds(clk::now() - t0);
  } while (el < min_s);
  // A share below 1: a thread of the sample was descheduled (other load on the machine). The
  // process clock sees another thread's time only at its ticks: coarse for short samples.
  if (it.threads == 1) {
    const double share = (cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0) / el;
    it.cpu.push_back(share);
    share_1t_.push_back(share);
  } else {
    share_2t_.push_back((cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - p0) / (el * it.threads));
  }
  if (it.sampled) it.sampled(calls);
  return el / calls;
}

double session::sample_peer(item& it, double min_s) {
  std::string why;
  auto r = peers.request({{"cmd", "time"}, {"data", it.data}, {"peer", it.peer}, {"threads", it.threads},
                          {"min_s", min_s}, {"warm_s", it.threads > 1 ? warm_s : 0.0}}, why);
  if (!r) {
    it.na = "error: " + why;
    return NAN;
  }
  return (*r)["s"].get<double>();
}

void session::measure(item_set& items, int rounds, double min_s, const std::string& label) {
  std::vector<item*> live;
  for (item& it : items)
    if (it.na.empty()) live.push_back(&it);
  for (item* it : live) {  // warm-up: caches, pages, first-call costs, the OpenMP team
    if (it->sample) {
      it->sample(-1);
    } else if (it->run) {
      it->run();
      if (it->sampled) it->sampled(0);
    } else {
      sample_peer(*it, 0);
    }
  }
  std::mt19937 shuffle(12345);
  for (int r = 0; r < rounds; ++r) {
    progress("  [{}] round {}/{}\r", label, r + 1, rounds);
    std::shuffle(live.begin(), live.end(), shuffle);
    for (item* it : live) {
      double t = NAN;
      if (it->na.empty()) t = it->sample ? it->sample(r) : it->run ? sample_cxx(*it, min_s) : sample_peer(*it, min_s);
      it->t.push_back(t);
      if (it->threads > 1 && settle_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(settle_s));
    }
  }
  progress("  [{}] {} rounds done          \n", label, rounds);
}

void session::begin(const std::vector<std::string>& lines, const std::vector<peer_desc>& known_peers) {
  out["machine"] = machine();
  out["command"] = opt_.command;
  const json& m = out["machine"];
  emit("# {}\n\n", name_);
  emit("- command: `{}`\n- date: {}\n- cpu: {} ({} online), RAM {:.1f} GiB, flags: {}\n- avx512_bf16: {}\n"
       "- compiler: {}, -march={}, {}\n- OpenMP {}, load average at start: {}\n",
       opt_.command, m["date"].get<std::string>(), m["cpu"].get<std::string>(), m["cpus_online"].get<unsigned>(),
       m["ram_gib"].get<double>(), m["flags"].get<std::string>(),
       m["avx512_bf16"].get<bool>() ? "yes" : "no (CPU lacks avx512_bf16)", m["compiler"].get<std::string>(),
       m["march"].get<std::string>(), m["build"].get<std::string>(), m["openmp"].get<int>(),
       m.contains("loadavg_start") ? m["loadavg_start"].dump() : "?");
  for (const std::string& l : lines) emit("{}\n", l);

  peers.start(opt_, known_peers);
  if (peers.up()) {
    const json& v = peers.hello()["versions"];
    auto version = [&](const char* lib) { return v[lib].is_null() ? std::string("n/a") : v[lib].get<std::string>(); };
    emit("- peers: python {}, numpy {}, torch {}, ml_dtypes {} (via {})\n", version("python"), version("numpy"),
         version("torch"), version("ml_dtypes"), opt_.python);
    out["peers"] = peers.hello();
    for (const peer_desc& p : peers.all())
      if (!p.why.empty()) emit("- peer {}: n/a (SKIPPED: {})\n", p.id, p.why);
  } else {
    emit("- peers: all n/a (SKIPPED: {})\n", peers.why());
    out["peers"] = {{"skipped", peers.why()}};
  }
}

void session::goal(const std::string& name, const std::string& where, double measured, double best, const target& t,
                   const std::string& unit, const std::string& note) {
  json g = {{"goal", name}, {"where", where}, {"target", t.value}, {"at_least", t.at_least}, {"unit", unit}};
  if (!note.empty()) g["note"] = note;
  auto meets = [&](double v) { return t.at_least ? v >= t.value : v <= t.value; };
  if (std::isfinite(measured)) {
    g["measured_median"] = measured;
    g["measured_best"] = std::isfinite(best) ? json(best) : json(nullptr);
    g["pass"] = meets(measured);
    g["best_passes"] = std::isfinite(best) && meets(best);
  } else {
    g["measured_median"] = nullptr;
    g["pass"] = nullptr;
  }
  goals_.push_back(g);
}

void session::goals_report(goal_layout layout) {
  emit("\n## Goals (a goal passes only if every case passes)\n\n");
  std::map<std::string, std::vector<const json*>> by_goal;
  std::vector<std::string> order;
  for (const auto& g : goals_) {
    const std::string name = g["goal"];
    if (!by_goal.count(name)) order.push_back(name);
    by_goal[name].push_back(&g);
  }
  std::vector<std::vector<std::string>> rows;
  std::string lines;
  for (const auto& name : order) {
    const json& first = *by_goal[name].front();
    const bool at_least = first["at_least"].get<bool>();
    const bool rate = first["unit"].get<std::string>().ends_with("/s");
    auto val = [&](double v) { return rate ? fmt::format("{:.2f}e9", v * 1e-9) : fmt::format("{:.2f}x", v); };
    int pass = 0, miss = 0, na = 0;
    const json* worst = nullptr;  // the case farthest on the wrong side of the target
    std::string cases, misses;
    for (const json* g : by_goal[name]) {
      const std::string where = g->at("where").get<std::string>();
      if (!cases.empty()) cases += "; ";
      if (g->at("pass").is_null()) {
        ++na;
        cases += where + " n/a";
        continue;
      }
      const double m = g->at("measured_median").get<double>();
      const bool ok = g->at("pass").get<bool>();
      ok ? ++pass : ++miss;
      cases += fmt::format("{} {}{}", where, val(m), ok ? "" : g->at("best_passes").get<bool>() ? " MISS (best passes)" : " MISS");
      if (!ok) misses += (misses.empty() ? "" : "; ") + where + " " + val(m);
      const double w = worst ? worst->at("measured_median").get<double>() : NAN;
      if (!worst || (at_least ? m < w : m > w)) worst = g;
    }
    const std::string v = miss == 0 && pass > 0 ? "PASS" : pass + miss == 0 ? "n/a" : "MISS";
    const double target_v = first["target"].get<double>();
    if (layout == goal_layout::every_case) {
      rows.push_back({name, v, fmt::format("{} {}", at_least ? ">=" : "<=", val(target_v)), cases});
      lines += fmt::format("VERDICT {}: {} ({})\n", name, v, cases);
    } else {
      rows.push_back({name, v, fmt::format("{} pass, {} miss{}", pass, miss, na ? fmt::format(", {} n/a", na) : ""),
                      worst ? fmt::format("{} / {} ({})", val(worst->at("measured_median").get<double>()), val(target_v),
                                          worst->at("where").get<std::string>())
                            : "n/a",
                      misses.empty() ? "-" : misses});
    }
  }
  if (layout == goal_layout::every_case)
    emit("{}\n{}", table({"goal", "verdict", "target", "cases: measured median"}, rows), lines);
  else
    emit("{}\n", table({"goal", "verdict", "cases", "worst case: measured / goal", "missed in"}, rows));
  out["goals"] = goals_;
}

void session::finish() {
  peers.stop();  // its CPU time then counts as ours (RUSAGE_CHILDREN)
  if (!text_.ends_with("\n\n")) emit("\n");
  if (!share_1t_.empty()) {
    const double med = median(share_1t_), mn = minimum(share_1t_);
    out["cpu_share"] = {{"median", med}, {"min", mn}};
    if (report_2t_share && !share_2t_.empty()) {
      const double med2 = median(share_2t_), mn2 = minimum(share_2t_);
      emit("Machine state: 1-thread samples ran with a median CPU share of {:.2f} (lowest {:.2f}), 2-thread samples "
           "with {:.2f} per thread (lowest {:.2f}): below 1 a thread was descheduled (other load on the machine) "
           "during the sample.",
           med, mn, med2, mn2);
      out["cpu_share"]["median_2t"] = med2;
      out["cpu_share"]["min_2t"] = mn2;
    } else {
      emit("Machine state: 1-thread samples ran with a median CPU share of {:.2f} (lowest {:.2f}): below 1 the "
           "thread was descheduled (other load on the machine) during the sample.",
           med, mn);
    }
  }
  const cpu_use now = cpu_now();
  const double wall = now.wall - start_.wall;
  const double others = (now.busy - start_.busy - (now.ours - start_.ours)) / wall;
  const double steal = (now.steal - start_.steal) / wall;
  emit(" Over the whole run ({:.0f} s), other processes kept {:.2f} of the {} CPUs busy on average and the host "
       "stole {:.2f} (/proc/stat, less this benchmark and its peers' process): the 2-thread cells need both "
       "CPUs, so read them with that in mind.",
       wall, std::max(others, 0.0), std::thread::hardware_concurrency(), steal);
  out["machine"]["other_load_cpus"] = others;
  out["machine"]["steal_cpus"] = steal;
  double la[3] = {0, 0, 0};
  if (getloadavg(la, 3) == 3) {
    out["machine"]["loadavg_end"] = {la[0], la[1], la[2]};
    emit(" Load average at the end: [{:.2f}, {:.2f}, {:.2f}].", la[0], la[1], la[2]);
  }
  emit("\n");
  if (opt_.json) fmt::print("{}\n", out.dump(1));
  else fmt::print("{}", text_);
}

int run(const std::string& name, const options& o, const std::function<void(session&)>& body) {
  std::signal(SIGPIPE, SIG_IGN);  // a peers' process that died: its pipe fails, we go on
  session s(name, o);
  int rc = 0;
  try {
    body(s);
    s.finish();
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", name, e.what());
    rc = 1;
  }
  s.peers.stop();
  return rc;
}

// ------------------------------------------------------------------------------------------
// The OpenMP crossover

void thread_sweep(session& s, const std::vector<sweep_series>& series, const sweep_spec& spec) {
  const std::vector<std::size_t>& sizes = spec.sizes;
  if (sizes.empty() || series.empty()) return;
  progress("sweep: sizes 2^{}..2^{}, {} rounds\n", std::countr_zero(sizes.front()), std::countr_zero(sizes.back()),
           spec.rounds);
  struct cell {
    std::vector<double> t1, t2, lib2, t1c, t2c;
  };
  std::map<std::pair<std::size_t, std::size_t>, cell> cells;  // (series, n)
  const double min_s = 1e-3;
  // One call after 20 ms without a parallel region: the OpenMP worker has gone to sleep, as for
  // sporadic calls in an application. Busy: the calling thread computes meanwhile (asleep too,
  // both vCPUs of a virtual machine go idle and a call can wait milliseconds for the worker's).
  auto once = [&](auto&& f) {
    const auto s0 = clk::now();
    if (spec.busy_cold) {
      while (seconds(clk::now() - s0) < 20e-3) {
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto t0 = clk::now();
    f();
    return seconds(clk::now() - t0);
  };
  const sweep_series& first = series.front();
  first.call(sizes.back(), 2);  // warm-up: the OpenMP team exists before the first sample
  for (int r = 0; r < spec.rounds; ++r) {
    progress("  [sweep] round {}/{}\r", r + 1, spec.rounds);
    // Untimed two-thread calls first: after an idle spell the first calls can wait milliseconds
    // for the worker's virtual CPU, which would land in a 1 ms sample.
    if (spec.warm_s > 0) {
      const auto w0 = clk::now();
      do first.call(std::min(sizes.back(), std::size_t{1} << 16), 2);
      while (seconds(clk::now() - w0) < spec.warm_s);
    }
    for (std::size_t n : sizes)
      for (std::size_t si = 0; si < series.size(); ++si) {
        cell& c = cells[{si, n}];
        auto one = [&] { series[si].call(n, 1); };
        auto two = [&] { series[si].call(n, 2); };
        if (r % 2) {  // alternate which goes first
          c.t1.push_back(per_call(one, min_s));
          c.t2.push_back(per_call(two, min_s));
        } else {
          c.t2.push_back(per_call(two, min_s));
          c.t1.push_back(per_call(one, min_s));
        }
        if (n >= spec.threshold) c.lib2.push_back(per_call([&] { series[si].call(n, 3); }, min_s));
      }
    for (std::size_t n : sizes) {
      cell& c = cells[{0, n}];
      c.t1c.push_back(once([&] { first.call(n, 1); }));
      c.t2c.push_back(once([&] { first.call(n, 2); }));
    }
  }
  progress("  [sweep] {} rounds done          \n", spec.rounds);

  json jsw = {{"rounds", spec.rounds}, {"sizes", json::array()}, {"crossover", json::object()}};
  const std::string cold_name = first.name + " cold", lib_name = first.name + " library";
  std::vector<std::string> head{"n"};
  for (const sweep_series& z : series) {
    if (spec.rate_columns) head.push_back(fmt::format("{} 1T {}", z.name, spec.unit));
    head.push_back(z.name + " hot 2T/1T");
  }
  head.push_back(cold_name + " 2T/1T");
  head.push_back(lib_name + " threads=2 / 1");
  std::vector<std::vector<std::string>> rows;
  for (std::size_t n : sizes) {
    std::vector<std::string> row{fmt::format("2^{} = {}", std::countr_zero(n), n)};
    json jn = {{"n", n}};
    for (std::size_t si = 0; si < series.size(); ++si) {
      const cell& c = cells[{si, n}];
      const ratio sp = time_ratio(c.t2, c.t1);
      if (spec.rate_columns) row.push_back(giga(median(c.t1), n));
      row.push_back(ratio_cell(sp));
      jn[series[si].name] = {{"t1_s", median(c.t1)}, {"t2_s", median(c.t2)}, {"speedup", sp.median},
                             {"speedup_best", sp.best}};
    }
    const cell& c0 = cells[{0, n}];
    const ratio cold = time_ratio(c0.t2c, c0.t1c);
    row.push_back(ratio_cell(cold));
    jn[cold_name] = {{"t1_s", median(c0.t1c)}, {"t2_s", median(c0.t2c)}, {"speedup", cold.median}};
    if (!c0.lib2.empty()) {
      const ratio lib = time_ratio(c0.lib2, c0.t1);
      row.push_back(ratio_cell(lib));
      jn[lib_name + " t2 speedup"] = lib.median;
    } else {
      row.push_back("serial (< threshold)");
    }
    rows.push_back(row);
    jsw["sizes"].push_back(jn);
  }
  s.emit("\n## OpenMP crossover: where 2 threads start to beat 1 ({}, {} rounds)\n\n", spec.input, spec.rounds);
  s.emit("hot: back-to-back calls, the OpenMP worker still spinning; 2T = two halves, each a serial\n{}.\n{}"
         "Samples: hot {} ms of repeated calls; cold a single call. Cells: speed-up median (best/best).\n\n{}\n",
         spec.halves,
         spec.busy_cold ? "cold: one call after 20 ms of other work on the calling thread (busy-wait; the worker has "
                          "gone to sleep),\nas for sporadic calls in an application.\n"
                        : "cold: one call after 20 ms idle (worker asleep), as for sporadic calls in an application.\n",
         min_s * 1e3, table(head, rows));

  // Recommend the larger of the hot crossovers and the cold one: from there a parallel call
  // wins whether or not the worker is awake.
  std::size_t worst = 0;
  bool all_found = true;
  std::string lines;
  auto never = [](const std::optional<std::size_t>& x) { return x ? fmt::format("{}", *x) : std::string("never"); };
  for (std::size_t si = 0; si < series.size(); ++si) {
    auto beats = [&](double above) {
      return winning_from(sizes, [&](std::size_t n) {
        const cell& c = cells[{si, n}];
        return time_ratio(c.t2, c.t1).median > above;
      });
    };
    const auto x1 = beats(1.0), x15 = beats(1.5);
    jsw["crossover"][series[si].name] = {{"beats", x1 ? json(*x1) : json(nullptr)},
                                         {"speedup_1_5", x15 ? json(*x15) : json(nullptr)}};
    lines += fmt::format("- {} hot: 2T > 1T from n = {}; 2T >= 1.5x from n = {}\n", series[si].name, never(x1), never(x15));
    if (x1) worst = std::max(worst, *x1);
    else all_found = false;
  }
  const auto xc = winning_from(sizes, [&](std::size_t n) {
    const cell& c = cells[{0, n}];
    return time_ratio(c.t2c, c.t1c).median > 1.0;
  });
  jsw["crossover"][cold_name] = xc ? json(*xc) : json(nullptr);
  lines += fmt::format("- {}: 2T > 1T from n = {}\n", cold_name, never(xc));
  std::optional<std::size_t> rec;
  if (all_found && xc) rec = std::max(worst, *xc);
  jsw["recommended_" + spec.threshold_name] = rec ? json(*rec) : json(nullptr);
  s.emit("{}\nRecommended `{}` (max of the hot crossovers and the cold one): {} (now {}).\n", lines, spec.threshold_name,
         rec ? fmt::format("2^{} = {}", std::countr_zero(*rec), *rec) : std::string("none found in the sweep"),
         spec.threshold);
  s.out["sweep"] = jsw;
}

// ------------------------------------------------------------------------------------------
// Profiles

std::pair<named_profile, diff_count> closest_profile(const std::function<diff_count(profile)>& diff) {
  static constexpr std::array<named_profile, 3> check_profiles{
      {{"ieee", profile::ieee}, {"ml_dtypes", profile::ml_dtypes}, {"cuda", profile::cuda}}};
  std::pair<named_profile, diff_count> best{check_profiles[0], diff(check_profiles[0].p)};
  for (std::size_t i = 1; i < check_profiles.size(); ++i) {
    const diff_count c = diff(check_profiles[i].p);
    if (c.value_diff < best.second.value_diff ||
        (c.value_diff == best.second.value_diff && c.nan_diff < best.second.nan_diff))
      best = {check_profiles[i], c};
  }
  return best;
}

}  // namespace fpscope::bench
