{
  "variables": {
    "dyllm_opt": ["-O3", "-fPIC", "-fno-math-errno", "-Wno-unused-function", "-Wno-uninitialized", "-Wno-maybe-uninitialized"]
  },
  "targets": [
    {
      "target_name": "dyllm_tier_avx512",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["src/kernels/native/tier_avx512.cc", "src/kernels/native/tier_avx512_attn.cc", "src/kernels/native/tier_avx512_stats.cc", "src/kernels/native/tier_avx512_quant.cc"],
          "cflags_cc": ["<@(dyllm_opt)", "-march=x86-64-v4", "-mavx512bf16", "-mavx512vnni", "-mtune=znver3"]
        }]
      ]
    },
    {
      "target_name": "dyllm_tier_avx2",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["src/kernels/native/tier_avx2.cc"],
          "cflags_cc": ["<@(dyllm_opt)", "-mavx2", "-mfma", "-mtune=znver3"]
        }]
      ]
    },
    {
      "target_name": "dyllm_kernels",
      "dependencies": ["dyllm_tier_avx512", "dyllm_tier_avx2"],
      "sources": [
        "src/kernels/native/module.cc", "src/kernels/native/gemm.cc", "src/kernels/native/attention.cc",
        "src/kernels/native/dyllm_update.cc", "src/kernels/native/stats.cc", "src/kernels/native/rowwise.cc",
        "src/kernels/native/qgemm.cc",
        "src/kernels/native/bench.cc", "src/kernels/native/tier_portable.cc", "src/kernels/native/mapfile.cc"
      ],
      # Node-API 8 (every Node >= 16.x): one binary, prebuilt or compiled, serves every Node >= 20. Only the tier
      # libraries above get -march flags; this module is baseline x86-64 and picks a tier by CPUID at run time.
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["<@(dyllm_opt)", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}
