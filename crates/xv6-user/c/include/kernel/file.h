// Compatibility with xv6 sources (`#include "kernel/file.h"`, as xv6's init.c does for CONSOLE).
// The kernel's file, inode and device-switch structures are not part of the user ABI
// (docs/ABI.md); CONSOLE, the console's major device number, is in xv6.h.
#include "../xv6.h"
