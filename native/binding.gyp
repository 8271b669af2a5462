{
  "targets": [
    {
      "target_name": "engine_native",
      "sources": ["src/addon.cc", "src/tracer.cc", "src/sys.cc", "src/restore.cc", "src/gpu.cc", "src/lz4.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-llz4"]
    }
  ]
}
