/* LD_PRELOAD shim for test_crash.py: logs, in order, every write and truncation a process makes
 * to one file ($FPSCOPE_WRITELOG_TARGET, the path exactly as passed to open()) into
 * $FPSCOPE_WRITELOG. Replaying the first k entries of the log gives the file exactly as it is
 * when the process is killed (SIGKILL, no power loss) after its k-th write, for every k.
 *
 * Log records: 1 byte type, two little-endian uint64, then data:
 *   'W' offset length <length bytes>     a completed pwrite()/write() to the file
 *   'T' length 0                         ftruncate() of the file
 *   anything the process appends itself ('M' marks: a step's record() returned).
 *
 * Built by the test itself: cc -shared -fPIC -O1 -o writelog.so writelog.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096
static char tracked[MAX_FD];
static int log_fd = -1;

static int (*real_open)(const char*, int, ...);
static int (*real_open64)(const char*, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_pwrite)(int, const void*, size_t, off_t);
static int (*real_ftruncate)(int, off_t);

static void init(void) {
  if (real_write) return;
  real_open = (int (*)(const char*, int, ...))dlsym(RTLD_NEXT, "open");
  real_open64 = (int (*)(const char*, int, ...))dlsym(RTLD_NEXT, "open64");
  real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  real_pwrite = (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  real_ftruncate = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
  real_write = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
}

static void log_all(const void* p, size_t n) {
  const char* c = (const char*)p;
  while (n) {
    ssize_t w = real_write(log_fd, c, n);
    if (w <= 0) abort();
    c += w;
    n -= (size_t)w;
  }
}

static void log_record(char type, uint64_t a, uint64_t b, const void* data, size_t n) {
  if (log_fd < 0) {
    const char* path = getenv("FPSCOPE_WRITELOG");
    if (!path) return;
    log_fd = real_open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) abort();
  }
  unsigned char head[17];
  head[0] = (unsigned char)type;
  for (int i = 0; i < 8; ++i) head[1 + i] = (unsigned char)(a >> (8 * i)), head[9 + i] = (unsigned char)(b >> (8 * i));
  log_all(head, sizeof head);
  if (n) log_all(data, n);
}

static int track(const char* path, int fd) {
  const char* target = getenv("FPSCOPE_WRITELOG_TARGET");
  if (fd >= 0 && fd < MAX_FD) tracked[fd] = target && path && strcmp(path, target) == 0;
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char* path, int flags, ...) {
  init();
  va_list ap;
  va_start(ap, flags);
  const mode_t m = mode_arg(flags, ap);
  va_end(ap);
  return track(path, real_open(path, flags, m));
}

int open64(const char* path, int flags, ...) {
  init();
  va_list ap;
  va_start(ap, flags);
  const mode_t m = mode_arg(flags, ap);
  va_end(ap);
  return track(path, (real_open64 ? real_open64 : real_open)(path, flags, m));
}

int close(int fd) {
  init();
  if (fd >= 0 && fd < MAX_FD) tracked[fd] = 0;
  return real_close(fd);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  init();
  const ssize_t w = real_pwrite(fd, buf, n, off);
  if (w > 0 && fd >= 0 && fd < MAX_FD && tracked[fd]) log_record('W', (uint64_t)off, (uint64_t)w, buf, (size_t)w);
  return w;
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t write(int fd, const void* buf, size_t n) {
  init();
  const int t = fd >= 0 && fd < MAX_FD && tracked[fd];
  const off_t off = t ? lseek(fd, 0, SEEK_CUR) : 0;
  const ssize_t w = real_write(fd, buf, n);
  if (w > 0 && t) log_record('W', (uint64_t)off, (uint64_t)w, buf, (size_t)w);
  return w;
}

int ftruncate(int fd, off_t len) {
  init();
  const int r = real_ftruncate(fd, len);
  if (r == 0 && fd >= 0 && fd < MAX_FD && tracked[fd]) log_record('T', (uint64_t)len, 0, 0, 0);
  return r;
}

int ftruncate64(int fd, off_t len) { return ftruncate(fd, len); }
