// A small C library for xv6 user programs: strings, memory, formatted output and a K&R heap
// over sbrk. The memory functions use string instructions so that gcc cannot turn them into
// calls to themselves.
#include "xv6.h"

#include <stdarg.h>

void *memset(void *dst, int c, size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if (n == 0 || (char *)dst <= (const char *)src || (char *)dst >= (const char *)src + n)
    return memcpy(dst, src, n);
  char *d = (char *)dst + n - 1;
  const char *s = (const char *)src + n - 1;
  __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
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

// malloc and free: Kernighan and Ritchie's, over sbrk.
typedef union header {
  struct {
    union header *next;
    uint size;  // in units of sizeof(Header)
  } s;
  long double align;
} Header;

static Header base;
static Header *freep;

void free(void *ap) {
  if (ap == 0)
    return;
  Header *bp = (Header *)ap - 1, *p;
  for (p = freep; !(bp > p && bp < p->s.next); p = p->s.next)
    if (p >= p->s.next && (bp > p || bp < p->s.next))
      break;
  if (bp + bp->s.size == p->s.next) {
    bp->s.size += p->s.next->s.size;
    bp->s.next = p->s.next->s.next;
  } else {
    bp->s.next = p->s.next;
  }
  if (p + p->s.size == bp) {
    p->s.size += bp->s.size;
    p->s.next = bp->s.next;
  } else {
    p->s.next = bp;
  }
  freep = p;
}

static Header *morecore(uint nu) {
  if (nu < 4096)
    nu = 4096;
  char *p = sbrk(nu * sizeof(Header));
  if (p == (char *)-1)
    return 0;
  Header *hp = (Header *)p;
  hp->s.size = nu;
  free((void *)(hp + 1));
  return freep;
}

void *malloc(uint nbytes) {
  uint nunits = (nbytes + sizeof(Header) - 1) / sizeof(Header) + 1;
  Header *prevp = freep, *p;
  if (prevp == 0) {
    base.s.next = freep = prevp = &base;
    base.s.size = 0;
  }
  for (p = prevp->s.next;; prevp = p, p = p->s.next) {
    if (p->s.size >= nunits) {
      if (p->s.size == nunits) {
        prevp->s.next = p->s.next;
      } else {
        p->s.size -= nunits;
        p += p->s.size;
        p->s.size = nunits;
      }
      freep = prevp;
      return (void *)(p + 1);
    }
    if (p == freep && (p = morecore(nunits)) == 0)
      return 0;
  }
}
