// mapfile.cc — checkpoint files mapped into memory (src/load/safetensors.ts) and the anonymous memory that prepared
// weights live in:
//   mapFile(fd, size) -> ArrayBuffer over a private mapping of the file's first `size` bytes; munmap when it is
//     collected. Tensors become typed-array views into it: nothing is copied, and pages come from the page cache.
//   populate(ab, offset, length) -> bool: fault a byte range in ahead of use (MADV_POPULATE_READ: one call instead of
//     a page fault per 4 KiB; MADV_WILLNEED where the kernel predates it).
//   release(ab, offset, length): drop the range's pages from this process (MADV_DONTNEED). Safe at any time: the
//     mapping is private and never written, so a later read faults the same bytes back in from the file. Only for
//     buffers mapFile() returned (they carry kMappingTag): on any other memory MADV_DONTNEED would zero the pages.
// The mapping is PROT_READ | PROT_WRITE (a view written by mistake copies the page, it never reaches the file), and
// populated for reading only (MAP_POPULATE on a writable private mapping would copy every page).
// The packed-weight cache file (src/load/pack-cache.ts) is read through three more:
//   mapRegion(fd, offset, length) -> ArrayBuffer over a read-only *shared* mapping of one region of a file (a packed
//     weight, used by the kernels in place: no copy, no fresh memory; the pages are the page cache's). offset must be
//     a multiple of the page size. Read-only: nothing may write into it (the kernels only read prepared weights).
//   checksum(ab, offset, length) -> 16 hex digits: a 64-bit hash of the bytes (xxHash64-style rounds over 1 MiB
//     chunks, split over the thread pool, chunk hashes combined in order: the same value on any thread count).
//   preparedBytes(dtype, N, K) -> the byteLength of the ArrayBuffer prepare() returns for such a weight;
//   packLayout() -> kPackLayoutVersion (glue.h): which packed layout prepare() writes.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "glue.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace dyllm {

namespace {

void unmap_finalize(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }
void anon_finalize(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }

size_t page_size() {
  static const size_t ps = size_t(sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096);
  return ps;
}

// The page-aligned part of [offset, offset + length) of ab (inner: pages wholly inside; else pages touching it).
bool range_arg(Args& a, char** base, size_t* begin, size_t* end, bool inner) {
  bool isab = false;
  if (a.argc > 0) napi_is_arraybuffer(a.env, a.argv[0], &isab);
  if (!isab) return a.type_error("mapping must be an ArrayBuffer from mapFile(), found %s", a.describe(0));
  void* data = nullptr;
  size_t len = 0;
  napi_get_arraybuffer_info(a.env, a.argv[0], &data, &len);
  int64_t off, n, e;
  if (!a.int_arg(1, "offset", &off) || !a.int_arg(2, "length", &n)) return false;
  if (!checked_sum(off, n, &e) || size_t(e) > len)
    return a.range_error("range [%lld, %lld) is outside the %zu-byte mapping", (long long)off, (long long)e, len);
  const size_t ps = page_size();
  *base = static_cast<char*>(data);
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(data);
  uintptr_t s = b0 + size_t(off), t = b0 + size_t(e);
  if (inner) {
    s = (s + ps - 1) & ~uintptr_t(ps - 1);
    t = t & ~uintptr_t(ps - 1);
  } else {
    s = s & ~uintptr_t(ps - 1);
    t = (t + ps - 1) & ~uintptr_t(ps - 1);
    // the mapping's last page is whole (mmap rounds up); never past it
  }
  *begin = s - b0 < len ? s - b0 : len;
  *end = t > s ? t - b0 : *begin;
  return true;
}

// The type tag of the ArrayBuffers mapFile() returns (napi_type_tag_object): release() refuses any other buffer.
const napi_type_tag kMappingTag = {0x6479'6c6c'6d6d'6170ULL, 0x6669'6c65'2e63'6301ULL};

}  // namespace

napi_value MapFile(napi_env env, napi_callback_info info) {
  Args a(env, info, "mapFile");
  if (!a.ok) return nullptr;
  int64_t fd, size;
  if (!a.int_arg(0, "fd", &fd) || !a.int_arg(1, "size", &size)) return nullptr;
  if (fd > kMaxInt32 || size == 0) {
    a.range_error("expected an open file descriptor and a size > 0, found fd %lld, size %lld", (long long)fd, (long long)size);
    return nullptr;
  }
  void* p = mmap(nullptr, size_t(size), PROT_READ | PROT_WRITE, MAP_PRIVATE, int(fd), 0);
  if (p == MAP_FAILED) {
    a.range_error("cannot map %lld bytes of the file: %s", (long long)size, std::strerror(errno));
    return nullptr;
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, size_t(size), unmap_finalize, reinterpret_cast<void*>(size_t(size)), &ab) != napi_ok) {
    munmap(p, size_t(size));
    a.range_error("cannot wrap a %lld-byte mapping in an ArrayBuffer", (long long)size);
    return nullptr;
  }
  if (napi_type_tag_object(env, ab, &kMappingTag) != napi_ok) {
    a.range_error("cannot tag a %lld-byte mapping", (long long)size);  // the buffer's finalizer unmaps it
    return nullptr;
  }
  return ab;
}

napi_value MapRegion(napi_env env, napi_callback_info info) {
  Args a(env, info, "mapRegion");
  if (!a.ok) return nullptr;
  int64_t fd, off, len;
  if (!a.int_arg(0, "fd", &fd, 0, kMaxInt32) || !a.int_arg(1, "offset", &off) || !a.int_arg(2, "length", &len)) return nullptr;
  if (len == 0 || size_t(off) % page_size() != 0) {
    a.range_error("expected a page-aligned offset and a length > 0, found offset %lld, length %lld", (long long)off, (long long)len);
    return nullptr;
  }
  void* p = mmap(nullptr, size_t(len), PROT_READ, MAP_SHARED, int(fd), off_t(off));
  if (p == MAP_FAILED) {
    a.range_error("cannot map %lld bytes of the file at offset %lld: %s", (long long)len, (long long)off, std::strerror(errno));
    return nullptr;
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, size_t(len), unmap_finalize, reinterpret_cast<void*>(size_t(len)), &ab) != napi_ok) {
    munmap(p, size_t(len));
    a.range_error("cannot wrap a %lld-byte mapping in an ArrayBuffer", (long long)len);
    return nullptr;
  }
  return ab;
}

namespace {

constexpr uint64_t H1 = 11400714785074694791ULL, H2 = 14029467366897019727ULL, H3 = 1609587929392839161ULL,
                   H4 = 9650029242287828579ULL, H5 = 2870177450012600261ULL;
inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t hround(uint64_t acc, uint64_t in) { return rotl64(acc + in * H2, 31) * H1; }
inline uint64_t load64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

uint64_t hash_bytes(const uint8_t* p, size_t n, uint64_t seed) {
  uint64_t v0 = seed + H1 + H2, v1 = seed + H2, v2 = seed, v3 = seed - H1;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    v0 = hround(v0, load64(p + i));
    v1 = hround(v1, load64(p + i + 8));
    v2 = hround(v2, load64(p + i + 16));
    v3 = hround(v3, load64(p + i + 24));
  }
  uint64_t h = rotl64(v0, 1) + rotl64(v1, 7) + rotl64(v2, 12) + rotl64(v3, 18) + uint64_t(n);
  for (; i + 8 <= n; i += 8) h = rotl64(h ^ hround(0, load64(p + i)), 27) * H1 + H4;
  for (; i < n; i++) h = rotl64(h ^ (uint64_t(p[i]) * H5), 11) * H1;
  h ^= h >> 33;
  h *= H2;
  h ^= h >> 29;
  h *= H3;
  h ^= h >> 32;
  return h;
}

}  // namespace

napi_value Checksum(napi_env env, napi_callback_info info) {
  Args a(env, info, "checksum");
  if (!a.ok) return nullptr;
  bool isab = false;
  if (a.argc > 0) napi_is_arraybuffer(env, a.argv[0], &isab);
  if (!isab) {
    a.type_error("buffer must be an ArrayBuffer, found %s", a.describe(0));
    return nullptr;
  }
  void* data = nullptr;
  size_t ablen = 0;
  napi_get_arraybuffer_info(env, a.argv[0], &data, &ablen);
  int64_t off, n, e;
  if (!a.int_arg(1, "offset", &off) || !a.int_arg(2, "length", &n)) return nullptr;
  if (!checked_sum(off, n, &e) || size_t(e) > ablen) {
    a.range_error("range [%lld, %lld) is outside the %zu-byte buffer", (long long)off, (long long)e, ablen);
    return nullptr;
  }
  const uint8_t* p = static_cast<const uint8_t*>(data) + off;
  constexpr int64_t CHUNK = int64_t(1) << 20;
  const int64_t chunks = (n + CHUNK - 1) / CHUNK;
  std::vector<uint64_t> hs(size_t(chunks > 0 ? chunks : 1), 0);
  parallel_for(chunks, chunks > 1, [&](int64_t c) {
    hs[size_t(c)] = hash_bytes(p + c * CHUNK, size_t(std::min<int64_t>(CHUNK, n - c * CHUNK)), uint64_t(c));
  });
  const uint64_t h = hash_bytes(reinterpret_cast<const uint8_t*>(hs.data()), size_t(chunks) * 8, uint64_t(n));
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  napi_value r;
  napi_create_string_utf8(env, buf, 16, &r);
  return r;
}

napi_value PreparedBytes(napi_env env, napi_callback_info info) {
  Args a(env, info, "preparedBytes");
  if (!a.ok) return nullptr;
  int dt = 0;
  int64_t N, K, bytes;
  if (!a.choice_arg(0, "dtype", {"bf16", "f32", "int8", "q4"}, &dt) || !a.int_arg(1, "N", &N) || !a.int_arg(2, "K", &K)) return nullptr;
  const bool fits = dt < 2 ? packed_bytes(dt == 0, N, K, &bytes) : quant_packed_bytes(dt == 3, N, K, &bytes);
  if (!fits || !checked_sum(bytes, int64_t(ALIGN), &bytes)) {
    a.range_error("a %lldx%lld weight is too large to pack", (long long)N, (long long)K);
    return nullptr;
  }
  napi_value r;
  napi_create_double(env, double(bytes), &r);
  return r;
}

napi_value PackLayout(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_int32(env, kPackLayoutVersion, &r);
  return r;
}

napi_value Populate(napi_env env, napi_callback_info info) {
  Args a(env, info, "populate");
  if (!a.ok) return nullptr;
  char* base;
  size_t b, e;
  if (!range_arg(a, &base, &b, &e, false)) return nullptr;
  bool ok = true;
  if (e > b && madvise(base + b, e - b, MADV_POPULATE_READ) != 0) {
    ok = false;  // EINVAL before Linux 5.14; EFAULT/EIO: the file shrank — the caller's size check says so
    madvise(base + b, e - b, MADV_WILLNEED);
  }
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

napi_value Release(napi_env env, napi_callback_info info) {
  Args a(env, info, "release");
  if (!a.ok) return nullptr;
  // Any ArrayBuffer but a mapping of mapFile() is refused: MADV_DONTNEED on its pages would zero them.
  bool isab = false, mapped = false;
  if (a.argc > 0) napi_is_arraybuffer(env, a.argv[0], &isab);
  if (isab && (napi_check_object_type_tag(env, a.argv[0], &kMappingTag, &mapped) != napi_ok || !mapped)) {
    a.type_error("mapping must be an ArrayBuffer from mapFile(), found an ArrayBuffer it did not map (dropping its pages would zero them)");
    return nullptr;
  }
  char* base;
  size_t b, e;
  if (!range_arg(a, &base, &b, &e, true)) return nullptr;
  if (e > b) madvise(base + b, e - b, MADV_DONTNEED);
  return undefined(env);
}

// Zeroed anonymous memory for a prepared weight, in transparent huge pages where the kernel allows them (one fault
// per 2 MiB instead of per 4 KiB while the weight is packed). A RangeError when the memory cannot be had.
bool new_weight_buffer(Args& a, int64_t bytes, napi_value* ab, void** data) {
  const size_t n = size_t(bytes > 0 ? bytes : 1);
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return a.range_error("cannot allocate %lld bytes for the packed weight", (long long)bytes);
#ifdef MADV_HUGEPAGE
  if (n >= (size_t(2) << 20)) madvise(p, n, MADV_HUGEPAGE);
#endif
  if (napi_create_external_arraybuffer(a.env, p, size_t(bytes), anon_finalize, reinterpret_cast<void*>(n), ab) != napi_ok) {
    munmap(p, n);
    return a.range_error("cannot allocate %lld bytes for the packed weight", (long long)bytes);
  }
  *data = p;
  return true;
}

}  // namespace dyllm
