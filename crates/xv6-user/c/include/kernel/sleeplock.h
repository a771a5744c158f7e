// Compatibility with xv6 sources that include "kernel/sleeplock.h" (xv6's init.c does, for
// kernel/file.h). The kernel's lock structures are not part of the user ABI: this header is empty.
#include "../xv6.h"
