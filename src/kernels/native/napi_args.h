// napi_args.h — N-API argument checking, used by every binding before it touches memory.
//
// Each getter checks one argument (JS type, typed-array kind, integer range) and, on a bad one, throws a one-line
// TypeError (wrong type) or RangeError (wrong value or size) naming the function and the argument, saying what was
// expected and what was found, then returns false (the binding returns nullptr). Size products are computed with
// checked multiplication: a product that overflows or exceeds 2^53 − 1 is an error, never a wrapped number. The
// messages match the TypeScript checks in src/kernels/args.ts, which the backends run first.
#pragma once
#include <node_api.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace dyllm {

constexpr int64_t kMaxSafe = (int64_t(1) << 53) - 1;  // Number.MAX_SAFE_INTEGER
constexpr int64_t kMaxInt32 = 2147483647;
constexpr int64_t kMaxHeadDim = 65536;

enum class ErrKind { Type, Range };

inline bool throw_kind(napi_env env, ErrKind kind, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
inline bool throw_kind(napi_env env, ErrKind kind, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    if (kind == ErrKind::Type) napi_throw_type_error(env, "ERR_DYLLM_KERNEL", buf);
    else napi_throw_range_error(env, "ERR_DYLLM_KERNEL", buf);
  }
  return false;
}

// A number as JavaScript's String(x) writes it (shortest round trip, NaN, Infinity).
struct NumStr {
  char s[32];
  explicit NumStr(double x) {
    if (std::isnan(x)) std::snprintf(s, sizeof s, "NaN");
    else if (std::isinf(x)) std::snprintf(s, sizeof s, x > 0 ? "Infinity" : "-Infinity");
    else if (x == std::floor(x) && std::fabs(x) < 1e21) std::snprintf(s, sizeof s, "%.0f", x);
    else
      for (int p = 15; p <= 17; p++) {
        std::snprintf(s, sizeof s, "%.*g", p, x);
        if (std::strtod(s, nullptr) == x) break;
      }
  }
};

// prod = Π factors; false when it exceeds 2^53 − 1 (a zero factor makes it 0 whatever the others are).
inline bool checked_product(std::initializer_list<int64_t> factors, int64_t* prod) {
  for (int64_t f : factors)
    if (f == 0) return *prod = 0, true;
  int64_t p = 1;
  for (int64_t f : factors)
    if (f < 0 || __builtin_mul_overflow(p, f, &p) || p > kMaxSafe) return false;
  *prod = p;
  return true;
}

// sum = a + b; false when it exceeds 2^53 − 1.
inline bool checked_sum(int64_t a, int64_t b, int64_t* sum) { return !__builtin_add_overflow(a, b, sum) && *sum <= kMaxSafe; }

struct Args {
  static constexpr size_t kMaxArgs = 16;
  napi_env env;
  const char* fn;
  size_t argc = kMaxArgs;
  napi_value argv[kMaxArgs];
  void* data = nullptr;
  bool ok = true;

  Args(napi_env e, napi_callback_info info, const char* name) : env(e), fn(name) {
    if (napi_get_cb_info(e, info, &argc, argv, nullptr, &data) != napi_ok)
      ok = throw_kind(e, ErrKind::Type, "%s: cannot read the arguments", name);
    if (argc > kMaxArgs) argc = kMaxArgs;
  }

  napi_valuetype type_of(size_t i) {
    napi_valuetype t = napi_undefined;
    if (i < argc) napi_typeof(env, argv[i], &t);
    return t;
  }
  bool is_nullish(size_t i) {
    const napi_valuetype t = type_of(i);
    return t == napi_undefined || t == napi_null;
  }

  // What argument i is, as the messages name it: "null", "a string", "an Array", "a Float64Array", ...
  const char* describe(size_t i) {
    switch (type_of(i)) {
      case napi_undefined: return "undefined";
      case napi_null: return "null";
      case napi_boolean: return "a boolean";
      case napi_number: return "a number";
      case napi_string: return "a string";
      case napi_symbol: return "a symbol";
      case napi_bigint: return "a bigint";
      case napi_function: return "a function";
      default: break;
    }
    bool yes = false;
    if (napi_is_typedarray(env, argv[i], &yes) == napi_ok && yes) {
      napi_typedarray_type t;
      size_t n;
      void* d;
      napi_value ab;
      size_t off;
      napi_get_typedarray_info(env, argv[i], &t, &n, &d, &ab, &off);
      return ta_name(t, true);
    }
    if (napi_is_array(env, argv[i], &yes) == napi_ok && yes) return "an Array";
    if (napi_is_arraybuffer(env, argv[i], &yes) == napi_ok && yes) return "an ArrayBuffer";
    if (napi_is_dataview(env, argv[i], &yes) == napi_ok && yes) return "a DataView";
    return "an object";
  }
  static const char* ta_name(napi_typedarray_type t, bool article) {
    switch (t) {
      case napi_int8_array: return article ? "an Int8Array" : "Int8Array";
      case napi_uint8_array: return article ? "a Uint8Array" : "Uint8Array";
      case napi_uint8_clamped_array: return article ? "a Uint8ClampedArray" : "Uint8ClampedArray";
      case napi_int16_array: return article ? "an Int16Array" : "Int16Array";
      case napi_uint16_array: return article ? "a Uint16Array" : "Uint16Array";
      case napi_int32_array: return article ? "an Int32Array" : "Int32Array";
      case napi_uint32_array: return article ? "a Uint32Array" : "Uint32Array";
      case napi_float32_array: return article ? "a Float32Array" : "Float32Array";
      case napi_float64_array: return article ? "a Float64Array" : "Float64Array";
      case napi_bigint64_array: return article ? "a BigInt64Array" : "BigInt64Array";
      case napi_biguint64_array: return article ? "a BigUint64Array" : "BigUint64Array";
      default: return article ? "a typed array" : "typed array";
    }
  }

  // An integer in [lo, hi] (a JS number: not NaN, no fraction).
  bool int_arg(size_t i, const char* what, int64_t* out, int64_t lo = 0, int64_t hi = kMaxSafe) {
    double d;
    if (type_of(i) != napi_number || napi_get_value_double(env, argv[i], &d) != napi_ok)
      return throw_kind(env, ErrKind::Type, "%s: %s must be a number, found %s", fn, what, describe(i));
    if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
      return throw_kind(env, ErrKind::Range, "%s: %s must be an integer in [%lld, %lld], found %s", fn, what,
                        (long long)lo, (long long)hi, NumStr(d).s);
    *out = int64_t(d);
    return true;
  }
  // A finite number >= lo.
  bool num_arg(size_t i, const char* what, double* out, double lo) {
    if (type_of(i) != napi_number || napi_get_value_double(env, argv[i], out) != napi_ok)
      return throw_kind(env, ErrKind::Type, "%s: %s must be a number, found %s", fn, what, describe(i));
    if (!(*out >= lo) || std::isinf(*out))
      return throw_kind(env, ErrKind::Range, "%s: %s must be a finite number >= %s, found %s", fn, what, NumStr(lo).s,
                        NumStr(*out).s);
    return true;
  }
  // A boolean; optional: undefined or null reads as false.
  bool bool_arg(size_t i, const char* what, bool* out, bool optional = false) {
    *out = false;
    if (optional && is_nullish(i)) return true;
    if (type_of(i) != napi_boolean || napi_get_value_bool(env, argv[i], out) != napi_ok)
      return throw_kind(env, ErrKind::Type, "%s: %s must be a boolean, found %s", fn, what, describe(i));
    return true;
  }
  // One of the listed strings: *index receives its position.
  bool choice_arg(size_t i, const char* what, std::initializer_list<const char*> choices, int* index) {
    char buf[32] = {0};
    size_t len = 0;
    if (type_of(i) == napi_string && napi_get_value_string_utf8(env, argv[i], buf, sizeof buf, &len) == napi_ok &&
        len < sizeof buf - 1) {
      int k = 0;
      for (const char* c : choices) {
        if (std::strcmp(buf, c) == 0) return *index = k, true;
        k++;
      }
    }
    char list[128] = {0};
    for (const char* c : choices) {
      const size_t l = std::strlen(list);
      std::snprintf(list + l, sizeof list - l, "%s'%s'", l ? " or " : "", c);
    }
    if (type_of(i) != napi_string)
      return throw_kind(env, ErrKind::Type, "%s: %s must be %s, found %s", fn, what, list, describe(i));
    return throw_kind(env, ErrKind::Range, "%s: %s must be %s, found '%.20s%s'", fn, what, list, buf,
                      len >= sizeof buf - 1 ? "..." : "");
  }

  // A typed array of kind `want`; ptr already includes byteOffset, len is in elements. optional: undefined or null
  // gives ptr = nullptr, len = 0. A zero-length array gets a non-null pointer, so "present" stays distinct.
  template <class T>
  bool ta_arg(size_t i, const char* what, napi_typedarray_type want, T** ptr, size_t* len, bool optional = false) {
    *ptr = nullptr;
    *len = 0;
    if (optional && is_nullish(i)) return true;
    bool is_ta = false;
    if (i < argc) napi_is_typedarray(env, argv[i], &is_ta);
    napi_typedarray_type type;
    void* data = nullptr;
    size_t length = 0;
    napi_value ab;
    size_t off;
    if (!is_ta || napi_get_typedarray_info(env, argv[i], &type, &length, &data, &ab, &off) != napi_ok || type != want)
      return throw_kind(env, ErrKind::Type, "%s: %s must be %s%s, found %s", fn, what, ta_name(want, true),
                        optional ? " or null" : "", describe(i));
    alignas(64) static unsigned char empty[64];
    *ptr = static_cast<T*>(data ? data : static_cast<void*>(empty));
    *len = length;
    return true;
  }
  bool f32(size_t i, const char* what, float** p, size_t* n, bool optional = false) {
    return ta_arg(i, what, napi_float32_array, p, n, optional);
  }
  bool f64(size_t i, const char* what, double** p, size_t* n, bool optional = false) {
    return ta_arg(i, what, napi_float64_array, p, n, optional);
  }
  bool i32(size_t i, const char* what, int32_t** p, size_t* n, bool optional = false) {
    return ta_arg(i, what, napi_int32_array, p, n, optional);
  }
  bool u8(size_t i, const char* what, uint8_t** p, size_t* n, bool optional = false) {
    return ta_arg(i, what, napi_uint8_array, p, n, optional);
  }

  // A product of sizes, named by expr ("M*N"): RangeError when it exceeds 2^53 − 1.
  bool product(const char* expr, std::initializer_list<int64_t> factors, int64_t* prod) {
    if (checked_product(factors, prod)) return true;
    char vals[160] = {0};
    for (int64_t f : factors) {
      const size_t l = std::strlen(vals);
      std::snprintf(vals + l, sizeof vals - l, "%s%lld", l ? "*" : "", (long long)f);
    }
    return throw_kind(env, ErrKind::Range, "%s: %s = %s exceeds 2^53 - 1 elements", fn, expr, vals);
  }
  // Array `what` (len elements) holds at least Π factors elements (named by expr). A null array (optional, absent)
  // passes.
  bool need(const char* what, const void* ptr, size_t len, const char* expr, std::initializer_list<int64_t> factors) {
    int64_t n;
    if (!product(expr, factors, &n)) return false;
    if (!ptr || int64_t(len) >= n) return true;
    char vals[160] = {0};
    if (factors.size() > 1)
      for (int64_t f : factors) {
        const size_t l = std::strlen(vals);
        std::snprintf(vals + l, sizeof vals - l, "%s%lld", l ? "*" : " = ", (long long)f);
      }
    return throw_kind(env, ErrKind::Range, "%s: %s has %zu elements, needs %s%s = %lld", fn, what, len, expr, vals,
                      (long long)n);
  }
  // Every idx[0..n) in [0, hi).
  bool indices(const char* what, const int32_t* idx, int64_t n, int64_t hi, const char* hi_name) {
    for (int64_t c = 0; c < n; c++)
      if (idx[c] < 0 || idx[c] >= hi)
        return throw_kind(env, ErrKind::Range, "%s: %s[%lld] = %d is outside [0, %s) = [0, %lld)", fn, what,
                          (long long)c, idx[c], hi_name, (long long)hi);
    return true;
  }
  bool range_error(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return throw_kind(env, ErrKind::Range, "%s: %s", fn, buf);
  }
  bool type_error(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return throw_kind(env, ErrKind::Type, "%s: %s", fn, buf);
  }

  // The attention shape arguments shared by attention, attentionDelta and attentionRescale.
  bool heads(size_t iH, size_t iHkv, size_t iDh, int64_t* H, int64_t* Hkv, int64_t* Dh) {
    if (!int_arg(iH, "H", H, 1, kMaxInt32) || !int_arg(iHkv, "Hkv", Hkv, 1, kMaxInt32) ||
        !int_arg(iDh, "Dh", Dh, 1, kMaxHeadDim))
      return false;
    if (*H % *Hkv != 0) return range_error("H (%lld) must be a multiple of Hkv (%lld)", (long long)*H, (long long)*Hkv);
    return true;
  }
};

}  // namespace dyllm
