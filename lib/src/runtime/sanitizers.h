// Whether this build runs under AddressSanitizer (-DSATCAP_SANITIZE=address,... with gcc or clang,
// tools/sanitize.sh; the libFuzzer targets of tools/fuzz.sh), and its manual poisoning, for the code
// that manages memory itself (runtime/cpu_allocator.cpp). Internal to the library, fuzz/ and tests.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define SATCAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SATCAP_ASAN 1
#endif
#endif

#ifdef SATCAP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
// Accesses to [p, p + n) are reported (a freed or never handed out part of a block) ...
#define SATCAP_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
// ... or allowed again.
#define SATCAP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SATCAP_POISON(p, n) ((void)(p), (void)(n))
#define SATCAP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif
