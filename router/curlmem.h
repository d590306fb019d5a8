/* curlmem: libcurl's memory, through its allocation callbacks (curl_global_init_mem).
 *
 * Why: every request in flight holds one libcurl easy handle, 5,360 bytes in libcurl
 * 7.88. mimalloc, like jemalloc, serves sizes from 5 to 6 KiB out of its 6 KiB class,
 * so 784 bytes of each handle are lost: 7.8 MB at 10,000 streams, more than any other
 * single cost under our control (docs/PERFORMANCE.md, "Many streams"). curlmem learns
 * the handle's size from one probe handle at start and serves blocks of exactly that
 * size from slabs (slab.h), and so the receive buffers (1,025 bytes for streams over
 * HTTP/2: 1,280 from mimalloc; 4,097 for the rest: 5,120); every other allocation
 * goes to malloc as before.
 *
 * Builds with AddressSanitizer keep every allocation with malloc, so the sanitizer
 * sees libcurl's handles whole.
 *
 * Ownership: process-wide; set up once in main() before any thread or other libcurl
 * call, and never torn down. Slabs serve only threads that called
 * curlmem_thread_attach (the workers); any thread may free. After
 * curl_global_cleanup libcurl must not be initialised again: a new init would put
 * back plain malloc/free under handles still cut from slabs.
 * Errors: returns curl_global_init_mem's result; without slabs (the address range
 * refused, or nothing to gain) libcurl simply uses malloc. */
#ifndef SWITCHYARD_CURLMEM_H
#define SWITCHYARD_CURLMEM_H

#include <stddef.h>

#include <curl/curl.h>

/* curl_global_init(flags) with the callbacks. Slabs serve the easy handle and the
 * `n` exact request sizes in `sizes` (for example a receive buffer's) wherever malloc
 * would round one up by at least 128 bytes more than a slab block (16-byte steps). */
CURLcode curlmem_init(long flags, const size_t *sizes, int n);
/* The same with another threshold (tests: 0 serves every size from slabs). */
CURLcode curlmem_setup(long flags, const size_t *sizes, int n, size_t min_waste);

/* Lets the calling thread's libcurl allocations come from slabs (a worker, at start). */
void curlmem_thread_attach(void);

/* The i-th size served from slabs (the easy handle's first), 0 past the last. */
size_t curlmem_slab_size(int i);
/* Whether p is a block of the slabs. */
int curlmem_owns(const void *p);
/* Slabs cut so far, all sizes (tests). */
size_t curlmem_slabs_cut(void);

#endif
