// Compatibility with xv6 sources (`#include "user/user.h"`): everything is in xv6.h.
#include "../xv6.h"
