// module.cc — the addon's entry: reads the run-time settings (DYLLM_THREADS, DYLLM_KC, DYLLM_ATTN_BLOCKED), starts
// the thread pool, picks the ISA tiers this CPU runs (CPUID) and binds every kernel to one of them:
// tiers() -> names, best first; bind(name) -> the object of kernels for that tier; threads(); prepare(); quantize();
// mapFile(), populate(), release(), mapRegion(), checksum(), preparedBytes(), packLayout() (mapfile.cc).
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "glue.h"

namespace dyllm {

int g_threads = 1;
Pool* g_pool = nullptr;
bool g_attn_blocked = true;

namespace {

std::vector<const TierOps*> supported_tiers() {
  std::vector<const TierOps*> v;
#ifdef DYLLM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("fma"))
    v.push_back(&tier_avx512);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v.push_back(&tier_avx2);
#endif
  v.push_back(&tier_portable);
  return v;
}

napi_value Tiers(napi_env env, napi_callback_info) {
  napi_value arr;
  napi_create_array(env, &arr);
  auto v = supported_tiers();
  for (size_t i = 0; i < v.size(); i++) {
    napi_value s;
    napi_create_string_utf8(env, v[i]->name, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, uint32_t(i), s);
  }
  return arr;
}

napi_value Threads(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_int32(env, g_threads, &r);
  return r;
}

napi_value Bind(napi_env env, napi_callback_info info) {
  Args a(env, info, "bind");
  if (!a.ok) return nullptr;
  char name[32] = {0};
  size_t nl = 0;
  if (a.type_of(0) != napi_string || napi_get_value_string_utf8(env, a.argv[0], name, sizeof name, &nl) != napi_ok) {
    a.type_error("tier name must be a string, found %s", a.describe(0));
    return nullptr;
  }
  const TierOps* tier = nullptr;
  for (const TierOps* t : supported_tiers())
    if (std::strcmp(t->name, name) == 0) tier = t;
  if (!tier) {
    std::string list;
    for (const TierOps* t : supported_tiers()) list += std::string(list.empty() ? "" : ", ") + t->name;
    a.range_error("ISA tier '%s' is unknown or not supported by this CPU (supported: %s)", name, list.c_str());
    return nullptr;
  }
  void* d = const_cast<TierOps*>(tier);
  napi_property_descriptor props[] = {
      {"matmul", nullptr, Matmul, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attentionDelta", nullptr, AttentionDelta, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"cosineRows", nullptr, CosineRows, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attentionRescale", nullptr, AttentionRescale, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"logitStats", nullptr, LogitStats, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"matmulCols", nullptr, MatmulCols, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"rmsnorm", nullptr, Rmsnorm, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"rope", nullptr, Rope, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"siluMul", nullptr, SiluMul, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"add", nullptr, Add, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"peak", nullptr, Peak, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"streamRead", nullptr, StreamRead, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"quantizeRows", nullptr, QuantizeRows, nullptr, nullptr, nullptr, napi_enumerable, d},
  };
  napi_value obj, nm;
  napi_create_object(env, &obj);
  napi_define_properties(env, obj, sizeof props / sizeof props[0], props);
  napi_create_string_utf8(env, tier->name, NAPI_AUTO_LENGTH, &nm);
  napi_set_named_property(env, obj, "isa", nm);
  return obj;
}

}  // namespace

napi_value Init(napi_env env, napi_value exports) {
  // Default: the CPUs this process may run on (sched_getaffinity, what Node's os.availableParallelism() counts on
  // Linux: a container or `taskset` limited to 2 of 64 CPUs gets 2 threads), else every online CPU.
  int nt = 0;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) nt = CPU_COUNT(&set);
#endif
  if (nt <= 0) nt = int(std::thread::hardware_concurrency());
  if (nt <= 0) nt = 1;
  if (const char* e = std::getenv("DYLLM_THREADS")) {
    int v = std::atoi(e);
    if (v > 0) nt = v;
  }
  if (const char* e = std::getenv("DYLLM_ATTN_BLOCKED")) g_attn_blocked = std::string(e) != "0";
  if (const char* e = std::getenv("DYLLM_KC")) {
    long v = std::atol(e);
    if (v >= 8) g_kc_units = v;
  }
  if (!g_pool) {  // first load in this process (worker_threads share the pool)
    g_threads = std::max(1, std::min(nt, 256));
    g_pool = new Pool(g_threads - 1);
  }
  napi_property_descriptor props[] = {
      {"tiers", nullptr, Tiers, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"bind", nullptr, Bind, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"prepare", nullptr, Prepare, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"quantize", nullptr, QuantizeWeight, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"mapFile", nullptr, MapFile, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"populate", nullptr, Populate, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"release", nullptr, Release, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"mapRegion", nullptr, MapRegion, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"checksum", nullptr, Checksum, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"preparedBytes", nullptr, PreparedBytes, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"packLayout", nullptr, PackLayout, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}


}  // namespace dyllm

NAPI_MODULE(NODE_GYP_MODULE_NAME, dyllm::Init)
