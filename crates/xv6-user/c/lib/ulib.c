// A small C library for xv6 user programs: strings, memory, formatted output and a heap over
// sbrk (an address-ordered free list). Copies and fills move 64 bytes per loop iteration in
// 8-byte words, then words, then bytes (under QEMU's TCG, `rep movsb` runs a byte per iteration,
// 11 times slower per page); gcc builds them with -fno-tree-loop-distribute-patterns, so it
// cannot turn the loops into calls to themselves.
#include "xv6.h"

#include <stdarg.h>

// An 8-byte word at any alignment, which may alias anything.
typedef uint64 __attribute__((may_alias, aligned(1))) uword;

void *memset(void *dst, int c, size_t n) {
  uchar *d = dst;
  uint64 w = (uchar)c * 0x0101010101010101ULL;
  for (; n >= 64; n -= 64, d += 64) {
    uword *p = (uword *)d;
    p[0] = w, p[1] = w, p[2] = w, p[3] = w, p[4] = w, p[5] = w, p[6] = w, p[7] = w;
  }
  for (; n >= 8; n -= 8, d += 8)
    *(uword *)d = w;
  for (; n > 0; n--)
    *d++ = (uchar)c;
  return dst;
}

// Lowest address first: right without overlap, or with dst below src (each word is read before
// a store can reach it).
static void copy_forward(uchar *d, const uchar *s, size_t n) {
  for (; n >= 64; n -= 64, d += 64, s += 64)
    for (int i = 0; i < 8; i++)
      ((uword *)d)[i] = ((const uword *)s)[i];
  for (; n >= 8; n -= 8, d += 8, s += 8)
    *(uword *)d = *(const uword *)s;
  for (; n > 0; n--)
    *d++ = *s++;
}

// Highest address first: right when dst overlaps src from above.
static void copy_backward(uchar *d, const uchar *s, size_t n) {
  d += n;
  s += n;
  for (; n >= 64; n -= 64) {
    d -= 64;
    s -= 64;
    for (int i = 7; i >= 0; i--)
      ((uword *)d)[i] = ((const uword *)s)[i];
  }
  for (; n >= 8; n -= 8) {
    d -= 8;
    s -= 8;
    *(uword *)d = *(const uword *)s;
  }
  while (n-- > 0)
    *--d = *--s;
}

void *memcpy(void *dst, const void *src, size_t n) {
  copy_forward(dst, src, n);
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if ((char *)dst <= (const char *)src || (char *)dst >= (const char *)src + n)
    copy_forward(dst, src, n);
  else
    copy_backward(dst, src, n);
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const volatile uchar *p = a, *q = b;
  for (; n > 0; n--, p++, q++)
    if (*p != *q)
      return (int)*p - (int)*q;
  return 0;
}

size_t strlen(const char *s) {
  const volatile char *p = s;
  size_t n = 0;
  while (p[n])
    n++;
  return n;
}

char *strcpy(char *dst, const char *src) {
  char *d = dst;
  while ((*d++ = *src++) != 0)
    ;
  return dst;
}

int strcmp(const char *a, const char *b) {
  while (*a && *a == *b)
    a++, b++;
  return (uchar)*a - (uchar)*b;
}

char *strchr(const char *s, int c) {
  for (; *s; s++)
    if (*s == (char)c)
      return (char *)s;
  return 0;
}

int atoi(const char *s) {
  int n = 0, neg = 0;
  if (*s == '-')
    neg = 1, s++;
  while ('0' <= *s && *s <= '9')
    n = n * 10 + (*s++ - '0');
  return neg ? -n : n;
}

char *gets(char *buf, int max) {
  int i = 0;
  char c;
  while (i + 1 < max) {
    if (read(0, &c, 1) < 1)
      break;
    buf[i++] = c;
    if (c == '\n' || c == '\r')
      break;
  }
  buf[i] = 0;
  return buf;
}

int stat(const char *path, struct stat *st) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return -1;
  int r = fstat(fd, st);
  close(fd);
  return r;
}

// Formatted output: %d %u %x %p %s %c %l (long, as in xv6: %ld %lu %lx too) and %%, collected in a
// buffer and written with as few writes as possible.
struct out {
  int fd;
  int len;
  char buf[256];
};

static void flush(struct out *o) {
  if (o->len > 0)
    write(o->fd, o->buf, o->len);
  o->len = 0;
}

static void putc_(struct out *o, char c) {
  if (o->len == (int)sizeof(o->buf))
    flush(o);
  o->buf[o->len++] = c;
}

static void putnum(struct out *o, unsigned long x, int base, int neg) {
  static const char digits[] = "0123456789abcdef";
  char tmp[24];
  int i = 0;
  do
    tmp[i++] = digits[x % base];
  while ((x /= base) != 0);
  if (neg)
    tmp[i++] = '-';
  while (--i >= 0)
    putc_(o, tmp[i]);
}

static void vprintf_(int fd, const char *fmt, va_list ap) {
  struct out o;
  o.fd = fd;
  o.len = 0;
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      putc_(&o, *fmt);
      continue;
    }
    fmt++;
    int lng = 0;
    while (*fmt == 'l')
      lng = 1, fmt++;
    switch (*fmt) {
    case 'd': {
      long v = lng ? va_arg(ap, long) : va_arg(ap, int);
      putnum(&o, v < 0 ? -(unsigned long)v : (unsigned long)v, 10, v < 0);
      break;
    }
    case 'u':
      putnum(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, uint), 10, 0);
      break;
    case 'x':
      putnum(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, uint), 16, 0);
      break;
    case 'p':
      putc_(&o, '0');
      putc_(&o, 'x');
      putnum(&o, (unsigned long)va_arg(ap, void *), 16, 0);
      break;
    case 's': {
      const char *s = va_arg(ap, const char *);
      for (s = s ? s : "(null)"; *s; s++)
        putc_(&o, *s);
      break;
    }
    case 'c':
      putc_(&o, (char)va_arg(ap, int));
      break;
    case '%':
      putc_(&o, '%');
      break;
    case 0:
      fmt--;
      break;
    default:
      if (lng) {  // xv6's "%l": a long in decimal
        long v = va_arg(ap, long);
        putnum(&o, v < 0 ? -(unsigned long)v : (unsigned long)v, 10, v < 0);
        fmt--;
      } else {
        putc_(&o, '%');
        putc_(&o, *fmt);
      }
      break;
    }
  }
  flush(&o);
}

void fprintf(int fd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf_(fd, fmt, ap);
  va_end(ap);
}

void printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf_(1, fmt, ap);
  va_end(ap);
}

// malloc and free. Free blocks sit on one list in address order, each merged with a free
// neighbour when it joins the list (the K&R scheme); malloc takes the first that fits, from its
// tail, and grows the heap with sbrk, 64 KiB at least. Sizes count 16-byte units, header
// included. An allocated block's header holds a tag made from its address, so free can refuse a
// pointer malloc did not hand out, or one already freed, with a message instead of corrupting
// the list.
#define UNIT 16
#define MIN_GROW 4096               // units: 64 KiB
#define MAX_GROW (0x7ffff000 / UNIT) // units sbrk's int argument can carry
#define TAG 0x6d616c6c6f632121ULL

struct block {
  uint64 units;
  union {
    struct block *next; // free: the next free block up
    uint64 tag;         // allocated: TAG ^ its address
  } u;
};
_Static_assert(sizeof(struct block) == UNIT, "a header is one unit");

static struct block *free_list; // the lowest free block, or 0

static uint64 tag_of(struct block *b) { return TAG ^ (uint64)b; }

// Puts block b on the list, merging it with the free blocks just before and after it.
static void put_free(struct block *b) {
  struct block **link = &free_list, *prev = 0;
  while (*link && *link < b) {
    prev = *link;
    link = &prev->u.next;
  }
  struct block *next = *link;
  if (next && b + b->units == next) {
    b->units += next->units;
    b->u.next = next->u.next;
  } else {
    b->u.next = next;
  }
  if (prev && prev + prev->units == b) {
    prev->units += b->units;
    prev->u.next = b->u.next;
  } else {
    *link = b;
  }
}

// Adds at least `units` units from sbrk to the list; 0 if sbrk refuses.
static int grow(uint64 units) {
  if (units < MIN_GROW)
    units = MIN_GROW;
  if (units > MAX_GROW)
    return 0;
  char *p = sbrk((int)(units * UNIT));
  if (p == (char *)-1)
    return 0;
  // The break is page-aligned after exec; should it not be, give up the first partial unit.
  uint64 skip = (UNIT - (uint64)p % UNIT) % UNIT;
  struct block *b = (struct block *)(p + skip);
  b->units = units - (skip != 0);
  put_free(b);
  return 1;
}

void *malloc(uint nbytes) {
  // At least one unit of payload; a uint cannot overflow this in 64 bits.
  uint64 units = ((uint64)nbytes + UNIT - 1) / UNIT + 1;
  if (units < 2)
    units = 2;
  for (;;) {
    for (struct block **link = &free_list; *link; link = &(*link)->u.next) {
      struct block *b = *link;
      if (b->units < units)
        continue;
      struct block *got = b;
      if (b->units - units >= 2) {
        b->units -= units;
        got = b + b->units;
        got->units = units;
      } else {
        *link = b->u.next;
      }
      got->u.tag = tag_of(got);
      return got + 1;
    }
    if (!grow(units))
      return 0;
  }
}

void free(void *p) {
  if (p == 0)
    return;
  struct block *b = (struct block *)p - 1;
  if ((uint64)p % UNIT != 0 || b->u.tag != tag_of(b)) {
    fprintf(2, "free: %p is not a block from malloc, or was freed already: ignored\n", p);
    return;
  }
  put_free(b);
}
