// kbench: kernel microbenchmarks timed with the TSC, for xv6 and (built with -DKBENCH_LINUX and
// gcc -static) for Linux, so that both kernels run the same code in the same QEMU.
//
//   kbench [-n ITERS] [-t TSC_KHZ] [NAME...]
//
// Runs every benchmark (or those named) and prints one line each:
//   kbench NAME MEDIAN_NS MIN_NS MAX_NS ITERS
// where the figures are over ITERS timed iterations (per operation for the batched ones: getpid,
// pipe ping-pong, kmalloc). -t gives the TSC rate in kHz (xtask measures the host's: under QEMU's
// TCG the guest's TSC is the host's); without it kbench calibrates against the kernel's clock
// (xv6: uptime ticks of 10 ms; Linux: CLOCK_MONOTONIC). Files are made in the current directory;
// on both systems each file written is fsync'd before its close, and the directory after unlinks,
// so both reach the disk. "1 MiB" of file data is four files of 256 KiB (xv6's largest file is
// 268 KiB). The last line is "kbench done".
#ifdef KBENCH_LINUX
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
typedef unsigned long uint64;
#define O_CREATE (O_CREAT | O_TRUNC)
#define SYSTEM "linux"
static int make_dir(const char *p) { return mkdir(p, 0755); }
static int remove_dir(const char *p) { return rmdir(p); }
// A child leaves without flushing the stdio buffers it shares with its parent.
static void child_exit(int st) { _exit(st); }
static int run_exec(const char *p, char **argv) { return execv(p, argv); }
static void sync_file(int fd) { fsync(fd); }
#else
#include "xv6.h"
#define SYSTEM "xv6"
static int make_dir(const char *p) { return mkdir(p); }
static int remove_dir(const char *p) { return unlink(p); }
static void child_exit(int st) { exit(st); }
static int run_exec(const char *p, char **argv) { return exec(p, argv); }
static void sync_file(int fd) { fsync(fd); }
#endif

#define MAXITER 64
#define MB (1024 * 1024)

static uint64 tsc_khz;
static int iters = 0; // 0: each benchmark's own count
static char buf[4096]; // file and pipe data: small, so that fork copies little
static const char *self;

static inline uint64 rdtsc(void) {
  unsigned lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64)hi << 32) | lo;
}

static void die(const char *what) {
  printf("kbench: FAILED: %s\n", what);
  exit(1);
}

// The TSC's rate against the kernel's clock, over about half a second.
static uint64 calibrate(void) {
#ifdef KBENCH_LINUX
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  uint64 t0 = rdtsc();
  do
    clock_gettime(CLOCK_MONOTONIC, &b);
  while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 500000000L);
  uint64 t1 = rdtsc();
  uint64 ns = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
  return (t1 - t0) * 1000000 / ns;
#else
  // Start on a tick's edge; 50 ticks of 10 ms.
  int u = uptime();
  while (uptime() == u)
    ;
  uint64 t0 = rdtsc();
  u = uptime();
  while (uptime() < u + 50)
    ;
  uint64 t1 = rdtsc();
  return (t1 - t0) / 500; // kHz: counts per ms
#endif
}

static uint64 ns_of(uint64 cycles) { return cycles * 1000000 / tsc_khz; }

// One result: the samples (TSC counts per operation) of one benchmark.
static void report(const char *name, uint64 *s, int n) {
  for (int i = 1; i < n; i++) // insertion sort: n is small
    for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
      uint64 t = s[j];
      s[j] = s[j - 1];
      s[j - 1] = t;
    }
  uint64 med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  printf("kbench %s %ld %ld %ld %d\n", name, (long)ns_of(med), (long)ns_of(s[0]),
         (long)ns_of(s[n - 1]), n);
}

static void reap(void) {
  int st;
  if (wait(&st) < 0)
    die("wait");
}

// --- the benchmarks: each times one iteration and returns TSC counts per operation ---

#define BATCH 200

static uint64 b_getpid(void) {
  uint64 t = rdtsc();
  for (int i = 0; i < BATCH; i++)
    getpid();
  return (rdtsc() - t) / BATCH;
}

static uint64 b_fork(void) {
  uint64 t = rdtsc();
  int pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0)
    child_exit(0);
  reap();
  return rdtsc() - t;
}

static uint64 b_exec(void) {
  uint64 t = rdtsc();
  int pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    char *argv[] = {(char *)self, "-x", 0};
    run_exec(self, argv);
    printf("kbench: exec %s failed\n", self);
    child_exit(1);
  }
  reap();
  return rdtsc() - t;
}

static uint64 b_pingpong(void) {
  int a[2], b[2];
  if (pipe(a) < 0 || pipe(b) < 0)
    die("pipe");
  int pid = fork();
  if (pid < 0)
    die("fork");
  char c = 0;
  if (pid == 0) {
    close(a[1]);
    close(b[0]);
    while (read(a[0], &c, 1) == 1)
      write(b[1], &c, 1);
    child_exit(0);
  }
  close(a[0]);
  close(b[1]);
  // One warm-up round trip, so that the child is running.
  write(a[1], &c, 1);
  read(b[0], &c, 1);
  uint64 t = rdtsc();
  for (int i = 0; i < BATCH; i++) {
    if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
      die("ping-pong");
  }
  t = (rdtsc() - t) / BATCH;
  close(a[1]);
  close(b[0]);
  reap();
  return t;
}

// 1 MiB through a pipe in 4 KiB writes, child to parent.
static uint64 b_pipebulk(void) {
  int p[2];
  if (pipe(p) < 0)
    die("pipe");
  uint64 t = rdtsc();
  int pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    close(p[0]);
    for (int off = 0; off < MB; off += 4096)
      if (write(p[1], buf, 4096) != 4096)
        child_exit(1);
    child_exit(0);
  }
  close(p[1]);
  int total = 0, n;
  while ((n = read(p[0], buf, 4096)) > 0)
    total += n;
  close(p[0]);
  reap();
  t = rdtsc() - t;
  if (total != MB)
    die("pipe bulk: short");
  return t;
}

// xv6 files hold at most 268 KiB (12 direct blocks and one indirect block of 256): "1 MiB" is
// four files of 256 KiB, named PREFIX0 to PREFIX3.
#define NPART 4
#define PART (MB / NPART)

static const char *part(const char *prefix, int i) {
  static char name[32];
  int n = strlen(prefix);
  if (n + 2 > (int)sizeof(name))
    die("file name too long");
  strcpy(name, prefix);
  name[n] = '0' + i;
  name[n + 1] = 0;
  return name;
}

// Writes the four files of PREFIX in writes of `chunk` bytes, each synced before its close.
static void write_files(const char *prefix, int chunk) {
  for (int i = 0; i < NPART; i++) {
    int fd = open(part(prefix, i), O_CREATE | O_WRONLY);
    if (fd < 0)
      die("create");
    for (int off = 0; off < PART; off += chunk)
      if (write(fd, buf + off % 4096, chunk) != chunk)
        die("write");
    sync_file(fd);
    close(fd);
  }
}

static void unlink_files(const char *prefix) {
  for (int i = 0; i < NPART; i++)
    if (unlink(part(prefix, i)) < 0)
      die("unlink");
  // The directory and the freed blocks reach the disk.
  int d = open("kbdir", O_RDONLY);
  fsync(d);
  close(d);
}

static uint64 b_write512(void) {
  uint64 t = rdtsc();
  write_files("kbdir/w", 512);
  t = rdtsc() - t;
  unlink_files("kbdir/w");
  return t;
}

static uint64 b_write4k(void) {
  uint64 t = rdtsc();
  write_files("kbdir/w", 4096);
  t = rdtsc() - t;
  unlink_files("kbdir/w");
  return t;
}

// Reads back 1 MiB written just before, cold: both systems drop their caches first (Linux its
// page cache, xv6 its buffer cache).
static uint64 b_read(void) {
  write_files("kbdir/r", 4096);
#ifdef KBENCH_LINUX
  sync();
  int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (dc < 0 || write(dc, "3\n", 2) != 2)
    die("drop_caches (is /proc mounted?)");
  close(dc);
#else
  // A kernel without dropcaches (an older one in an A/B run) has a cache too small to hold
  // the file anyway.
  dropcaches();
#endif
  uint64 t = rdtsc();
  int total = 0;
  for (int i = 0; i < NPART; i++) {
    int fd = open(part("kbdir/r", i), O_RDONLY);
    if (fd < 0)
      die("open for read");
    int n;
    while ((n = read(fd, buf, 4096)) > 0)
      total += n;
    close(fd);
  }
  t = rdtsc() - t;
  unlink_files("kbdir/r");
  if (total != MB)
    die("read: short");
  return t;
}

static uint64 b_unlink(void) {
  write_files("kbdir/u", 4096);
  uint64 t = rdtsc();
  unlink_files("kbdir/u");
  return rdtsc() - t;
}

#define NSMALL 200

// Creates 200 files of 100 bytes (each synced at close), then removes them.
static uint64 b_smallfiles(void) {
  char name[16] = "kbdir/s";
  uint64 t = rdtsc();
  for (int i = 0; i < NSMALL; i++) {
    name[7] = 'a' + i / 26 % 26;
    name[8] = 'a' + i % 26;
    name[9] = 0;
    int fd = open(name, O_CREATE | O_WRONLY);
    if (fd < 0)
      die("create small file");
    if (write(fd, buf, 100) != 100)
      die("write small file");
    sync_file(fd);
    close(fd);
  }
  for (int i = 0; i < NSMALL; i++) {
    name[7] = 'a' + i / 26 % 26;
    name[8] = 'a' + i % 26;
    if (unlink(name) < 0)
      die("unlink small file");
  }
  int d = open("kbdir", O_RDONLY);
  fsync(d);
  close(d);
  return rdtsc() - t;
}

#define BIG (4 * MB)

static void touch(volatile char *p) {
  for (int off = 0; off < BIG; off += 4096)
    p[off] = 1;
}

static uint64 b_sbrk(void) {
  uint64 t = rdtsc();
  char *p = (char *)sbrk(BIG);
  if (p == (char *)-1)
    die("sbrk");
  touch(p);
  if (sbrk(-BIG) == (char *)-1)
    die("sbrk shrink");
  return rdtsc() - t;
}

static uint64 b_mmap(void) {
  uint64 t = rdtsc();
  char *p = mmap(0, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    die("mmap");
  touch(p);
  if (munmap(p, BIG) < 0)
    die("munmap");
  return rdtsc() - t;
}

#ifndef KBENCH_LINUX
static uint64 b_kmalloc(void) {
  uint64 t = rdtsc();
  for (int i = 0; i < BATCH; i++) {
    void *p = kmalloc(64);
    if (p == 0 || kmfree(p) != 0)
      die("kmalloc");
  }
  return (rdtsc() - t) / BATCH;
}
#endif

struct bench {
  const char *name;
  uint64 (*fn)(void);
  int iters; // default timed iterations
};

static struct bench benches[] = {
    {"getpid", b_getpid, 21},
    {"fork_exit_wait", b_fork, 21},
    {"fork_exec_wait", b_exec, 11},
    {"pipe_pingpong", b_pingpong, 11},
    {"pipe_bulk_4k", b_pipebulk, 5},
    {"write_1m_512", b_write512, 5},
    {"write_1m_4k", b_write4k, 5},
    {"read_1m_cold", b_read, 5},
    {"unlink_1m", b_unlink, 5},
    {"smallfiles_200", b_smallfiles, 5},
    {"sbrk_4m_touch", b_sbrk, 5},
    {"mmap_4m_touch", b_mmap, 5},
#ifndef KBENCH_LINUX
    {"kmalloc_kmfree", b_kmalloc, 11},
#endif
};
#define NBENCH (int)(sizeof(benches) / sizeof(benches[0]))

static int wanted(const char *name, int argc, char **argv, int first) {
  if (first >= argc)
    return 1;
  for (int i = first; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

int main(int argc, char **argv) {
  self = argv[0];
  int a = 1;
  for (; a < argc && argv[a][0] == '-'; a++) {
    if (strcmp(argv[a], "-x") == 0) // the child of fork_exec_wait
      exit(0);
    if (strcmp(argv[a], "-n") == 0 && a + 1 < argc)
      iters = atoi(argv[++a]);
    else if (strcmp(argv[a], "-t") == 0 && a + 1 < argc)
      tsc_khz = atoi(argv[++a]);
    else
      die("usage: kbench [-n ITERS] [-t TSC_KHZ] [NAME...]");
  }
  if (iters < 0 || iters > MAXITER)
    die("-n: 1 to 64 iterations");
  for (int i = a; i < argc; i++) {
    int known = 0;
    for (int b = 0; b < NBENCH; b++)
      known |= strcmp(benches[b].name, argv[i]) == 0;
    if (!known)
      printf("kbench: no benchmark %s on %s (skipped)\n", argv[i], SYSTEM);
  }
  if (tsc_khz == 0)
    tsc_khz = calibrate();
  printf("kbench system %s tsc_khz %ld\n", SYSTEM, (long)tsc_khz);
#ifdef KBENCH_LINUX
  setvbuf(stdout, 0, _IONBF, 0);
#endif
  for (int i = 0; i < (int)sizeof(buf); i++)
    buf[i] = (char)i;
  make_dir("kbdir");

  static uint64 samples[MAXITER];
  for (int b = 0; b < NBENCH; b++) {
    if (!wanted(benches[b].name, argc, argv, a))
      continue;
    int n = iters ? iters : benches[b].iters;
    benches[b].fn(); // warm-up, untimed
    for (int i = 0; i < n; i++)
      samples[i] = benches[b].fn();
    report(benches[b].name, samples, n);
  }
  remove_dir("kbdir");
  printf("kbench done\n");
  exit(0);
}
