// Compatibility with xv6 sources (`#include "kernel/fcntl.h"`): everything is in xv6.h.
#include "../xv6.h"
