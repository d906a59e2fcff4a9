// The output writer (fpscope/output.hpp): complete or nothing, never over a device, a FIFO, a
// directory or an input, symbolic links written through to a regular file, one-line errors.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fpscope/output.hpp"
#include "test_files.hpp"

using namespace fpscope;
using namespace fpscope::test;
namespace fs = std::filesystem;

namespace {

// The message of the output_error that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const output_error& e) {
    return e.what();
  }
  return "";
}

mode_t kind_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & S_IFMT;
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

// A bound Unix socket at `path` (closed; the node stays).
void make_socket(const std::string& path) {
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  const int rc = ::bind(s, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  ::close(s);
  REQUIRE(rc == 0);
}

}  // namespace

TEST_CASE("output appears only complete, in place of a regular file", "[output]") {
  temp_dir d;
  SECTION("a new file: nothing visible until commit, then exactly the bytes written") {
    output_file f(d / "new.bin");
    CHECK(f.temp_path().empty());  // O_TMPFILE: unnamed
    for (int i = 0; i < 3000; ++i) f.write(std::string(1000, char('a' + i % 26)));  // past the 1 MiB buffer
    CHECK(d.names().empty());
    f.commit();
    CHECK(d.names() == std::vector<std::string>{"new.bin"});
    const std::string got = read_file(d / "new.bin");
    REQUIRE(got.size() == 3'000'000);
    CHECK(got.substr(2'999'000) == std::string(1000, char('a' + 2999 % 26)));
  }
  SECTION("an existing file is replaced atomically on commit, kept without it") {
    write_file(d / "x", "old");
    const ino_t before = inode_of(d / "x");
    {
      output_file f(d / "x");
      f.write("never committed");
    }
    CHECK(read_file(d / "x") == "old");
    CHECK(inode_of(d / "x") == before);
    write_output(d / "x", "new");
    CHECK(read_file(d / "x") == "new");
    CHECK(inode_of(d / "x") != before);  // a new file renamed over the old one, not rewritten in place
    CHECK(d.names() == std::vector<std::string>{"x"});
  }
  SECTION("a symbolic link is written through to the regular file it points to") {
    fs::create_directory(d.path / "sub");
    write_file(d / "sub/real", "old");
    fs::create_symlink("sub/real", d.path / "link");  // relative to the link's directory
    output_file f(d / "link");
    CHECK(f.target() == fs::canonical(d.path / "sub/real").string());
    f.write("through");
    f.commit();
    CHECK(kind_of(d / "link") == S_IFLNK);
    CHECK(read_file(d / "sub/real") == "through");
    CHECK(d.names().size() == 2);
    CHECK(fs::directory_iterator(d.path / "sub")->path().filename() == "real");
  }
}

TEST_CASE("outputs that are not regular files are refused, untouched", "[output]") {
  temp_dir d;
  const auto refused = [&](const std::string& path, const std::string& why) {
    const mode_t kind = kind_of(path);
    const std::string m = error_of([&] { write_output(path, "x"); });
    CHECK(one_line(m));
    CHECK_THAT(m, Catch::StartsWith(path + ": cannot write: ") && Catch::Contains(why));
    CHECK(kind_of(path) == kind);
  };
  SECTION("a FIFO") {
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
    refused(d / "fifo", "a FIFO, not a regular file");
    CHECK(d.names() == std::vector<std::string>{"fifo"});
  }
  SECTION("a socket") {
    make_socket(d / "sock");
    refused(d / "sock", "a socket");
    CHECK(d.names() == std::vector<std::string>{"sock"});
  }
  SECTION("a directory") {
    refused(d.path.string(), "is a directory");
    fs::create_directory(d.path / "sub");
    refused(d / "sub", "is a directory");
    CHECK(d.names() == std::vector<std::string>{"sub"});
  }
  // Never the real /dev/null, even through a link: a broken writer running as root would replace it.
  SECTION("a character device made here (root only), and a link to it") {
    if (::mknod((d / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0) {
      CHECK((errno == EPERM || errno == EACCES));  // unprivileged: nothing to test with
      return;
    }
    refused(d / "null", "a character device, not a regular file");
    fs::create_symlink("null", d.path / "null.npy");
    refused(d / "null.npy", "links to " + fs::canonical(d.path / "null").string() + ", a character device");
    CHECK(d.names().size() == 2);
  }
  SECTION("a link to a FIFO") {
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
    fs::create_symlink("fifo", d.path / "to_fifo");
    refused(d / "to_fifo", "a FIFO, not a regular file");
    CHECK(kind_of(d / "fifo") == S_IFIFO);
    CHECK(d.names().size() == 2);
  }
  SECTION("a dangling symbolic link") {
    fs::create_symlink("nowhere", d.path / "dangling");
    refused(d / "dangling", "dangling");
    CHECK(d.names() == std::vector<std::string>{"dangling"});
  }
  SECTION("a link to a directory") {
    fs::create_directory(d.path / "sub");
    fs::create_symlink("sub", d.path / "to_sub");
    refused(d / "to_sub", "links to a directory");
  }
}

TEST_CASE("an output that is one of the inputs is refused", "[output]") {
  temp_dir d;
  write_file(d / "in.npy", "input");
  fs::create_symlink("in.npy", d.path / "alias");
  fs::create_hard_link(d.path / "in.npy", d.path / "hard");
  output_options opt;
  opt.inputs = {"unrelated", d / "in.npy"};
  for (const std::string& out : {d / "in.npy", d / "./in.npy", d / "alias", d / "hard"}) {
    const std::string m = error_of([&] { write_output(out, "clobbered", opt); });
    CHECK(one_line(m));
    CHECK_THAT(m, Catch::StartsWith(out + ": cannot write: it is the input file " + d / "in.npy"));
  }
  CHECK(read_file(d / "in.npy") == "input");
  CHECK(d.names().size() == 3);
  opt.inputs = {d / "alias"};  // the input named through a link: the same file all the same
  CHECK_THAT(error_of([&] { write_output(d / "in.npy", "clobbered", opt); }), Catch::Contains("is the input file"));
  write_output(d / "other", "fine", opt);
  CHECK(read_file(d / "other") == "fine");
}

TEST_CASE("write failures are one line naming the path, and leave the old file", "[output]") {
  temp_dir d;
  SECTION("no such directory") {
    const std::string p = d / "no/such/x";
    CHECK(error_of([&] { write_output(p, "x"); }) == p + ": cannot write: No such file or directory");
  }
  SECTION("a file where a directory should be") {
    write_file(d / "file", "x");
    CHECK_THAT(error_of([&] { write_output(d / "file/x", "x"); }), Catch::Contains("Not a directory"));
  }
  SECTION("over the file size limit (EFBIG)") {
    write_file(d / "x", "previous");
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    REQUIRE((old.rlim_max == RLIM_INFINITY || old.rlim_max >= (1u << 16)));  // room for the test
    struct sigaction ign {}, prev {};
    ign.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGXFSZ, &ign, &prev) == 0);
    rlimit low = old;
    low.rlim_cur = 1 << 16;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &low) == 0);
    const std::string m = error_of([&] {
      output_file f(d / "x");
      f.write(std::string(1 << 20, 'z'));
      f.commit();
    });
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::sigaction(SIGXFSZ, &prev, nullptr);
    CHECK(one_line(m));
    CHECK_THAT(m, Catch::StartsWith(d / "x" + ": cannot write: File too large") && Catch::Contains("ulimit -f"));
    CHECK(read_file(d / "x") == "previous");
    CHECK(d.names() == std::vector<std::string>{"x"});
  }
  SECTION("use after a failure or a commit is a logic error") {
    output_file f(d / "x");
    f.commit();
    CHECK_THROWS_AS(f.write("late"), std::logic_error);
  }
}

TEST_CASE("the named temporary fallback (file systems without O_TMPFILE)", "[output]") {
  temp_dir d;
  output_options opt;
  opt.named_temporary = true;
  SECTION("a random O_EXCL name beside the target, renamed into place") {
    write_file(d / "x", "old");
    output_file f(d / "x", opt);
    const std::string t = f.temp_path();
    REQUIRE_THAT(t, Catch::StartsWith(d / "x.tmp."));
    CHECK(t.size() == (d / "x.tmp.").size() + 16);
    CHECK(kind_of(t) == S_IFREG);
    output_file g(d / "x", opt);
    CHECK(g.temp_path() != t);  // not the pid: two writers of one target do not collide
    f.write("new");
    f.commit();
    CHECK(read_file(d / "x") == "new");
    CHECK(!fs::exists(t));
  }
  SECTION("abandoned: the temporary goes") {
    {
      output_file f(d / "x", opt);
      f.write("partial");
      CHECK(d.names().size() == 1);
    }
    CHECK(d.names().empty());
  }
  SECTION("remove_output_temporaries() (the signal handler's) deletes live temporaries") {
    output_file f(d / "x", opt);
    REQUIRE(d.names().size() == 1);
    remove_output_temporaries();
    CHECK(d.names().empty());
  }
  SECTION("the same refusals") {
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
    CHECK_THAT(error_of([&] { output_file f(d / "fifo", opt); }), Catch::Contains("a FIFO"));
    CHECK(d.names() == std::vector<std::string>{"fifo"});
  }
}
