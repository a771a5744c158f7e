// cmalloctest: tests the C library's malloc and free. Prints "cmalloctest: ok" and exits 0 when
// every case passes.
#include "xv6.h"

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("cmalloctest: FAILED: %s\n", what);
    failures++;
  }
}

static uint rnd_state = 12345;
static uint rnd(void) {
  rnd_state = rnd_state * 1103515245 + 12345;
  return rnd_state >> 8;
}

#define N 200

int main(int argc, char **argv) {
  // Random sizes, filled with a pattern, freed in random order: no block overlaps another.
  char *p[N];
  uint size[N];
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < N; i++) {
      size[i] = rnd() % (i % 10 == 0 ? 20000 : 300);
      p[i] = malloc(size[i]);
      check(p[i] != 0, "malloc of a modest size");
      check((uint64)p[i] % 16 == 0, "16-byte alignment");
      memset(p[i], i, size[i]);
    }
    for (int k = 0; k < N; k++) {
      int i = rnd() % N;
      if (p[i] == 0)
        continue;
      for (uint j = 0; j < size[i]; j++)
        if ((uchar)p[i][j] != (uchar)i) {
          check(0, "contents intact");
          break;
        }
      free(p[i]);
      p[i] = 0;
    }
    for (int i = 0; i < N; i++)
      free(p[i]); // the rest (free(0) is a no-op)
  }
  // The heap stops growing: freed memory is reused (and merged) across rounds.
  char *brk1 = sbrk(0);
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < N; i++)
      p[i] = malloc(rnd() % 300);
    for (int i = 0; i < N; i++)
      free(p[i]);
  }
  check(sbrk(0) == brk1, "freed memory is reused");
  // One big block after many small ones were freed: they merged.
  char *big = malloc(60000);
  check(big != 0, "a big block");
  free(big);

  // Sizes nothing can serve fail cleanly.
  check(malloc(0xffffffff) == 0, "malloc(4 GiB - 1) fails");
  check(malloc(0x80000000) == 0, "malloc(2 GiB) fails");
  char *small = malloc(10);
  check(small != 0, "malloc still works after failures");
  strcpy(small, "still ok");
  // A zero-byte request gets a usable, distinct pointer.
  char *z1 = malloc(0), *z2 = malloc(0);
  check(z1 != 0 && z2 != 0 && z1 != z2, "malloc(0) gives distinct pointers");
  free(z1);
  free(z2);
  // Bad frees are refused with a message and change nothing.
  printf("cmalloctest: three refused frees follow\n");
  free(small + 1);
  free(small);
  free(small);
  char stack_buf[32];
  free(stack_buf + 16);
  char *again = malloc(10);
  check(again != 0, "malloc after refused frees");
  free(again);

  if (failures) {
    printf("cmalloctest: %d FAILED\n", failures);
    exit(1);
  }
  printf("cmalloctest: ok\n");
  exit(0);
}
