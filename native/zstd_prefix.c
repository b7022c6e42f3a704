// Why this exists: zstd-napi (0.0.13, the latest) exposes ZSTD_CCtx_loadDictionary but not
// ZSTD_CCtx_refPrefix. A loaded dictionary becomes a CDict with match tables of its own, which the context
// then attaches, copies or loads again into its own tables: for a 66 MB base, two sets of 2^26-entry
// tables (docs/benchmarks.md, "Dictionary tables held twice"). A referenced prefix, what
// `zstd --patch-from` uses, is indexed once, into the context's own tables, and is not copied.
//
// One function, for src-main/engine/zstd-prefix.ts:
//   compress(output, target, prefix, parameters) -> bytes written into output
// compresses `target` into one zstd frame with `prefix` as raw content (ZSTD_dct_rawContent: even a
// prefix that starts with zstd's dictionary magic number), `parameters` being [ZSTD_cParameter, value, ...]
// pairs. Throws an Error whose message is zstd's error name. It is built from the zstd sources zstd-napi
// ships (binding.gyp), so this encoder and zstd-napi's decoder are the same zstd version; the frame is an
// ordinary zstd frame, decoded with the base as a raw-content dictionary.
#define ZSTD_STATIC_LINKING_ONLY
#include <node_api.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdbool.h>
#include <stdint.h>
#include "zstd.h"

// Throws a JavaScript Error with `message` and returns NULL (what a failed call returns to JavaScript).
static napi_value fail(napi_env env, const char* message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

// The bytes of a Uint8Array (a Buffer is one), or false after throwing a TypeError saying `message`.
static bool bytes_of(napi_env env, napi_value value, const char* message, uint8_t** data, size_t* length) {
  bool is_typedarray = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, value, &is_typedarray) == napi_ok && is_typedarray &&
      napi_get_typedarray_info(env, value, &type, length, (void**)data, NULL, NULL) == napi_ok && type == napi_uint8_array) {
    return true;
  }
  napi_throw_type_error(env, NULL, message);
  return false;
}

static napi_value compress(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 4) return fail(env, "compress(output, target, prefix, parameters) takes four arguments");
  uint8_t *output, *target, *prefix;
  size_t output_length, target_length, prefix_length;
  if (!bytes_of(env, argv[0], "output must be a Uint8Array", &output, &output_length) ||
      !bytes_of(env, argv[1], "target must be a Uint8Array", &target, &target_length) ||
      !bytes_of(env, argv[2], "prefix must be a Uint8Array", &prefix, &prefix_length)) {
    return NULL;
  }
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[3], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[3], &count) != napi_ok || count % 2 != 0) {
    napi_throw_type_error(env, NULL, "parameters must be an array of [parameter, value] pairs, flattened");
    return NULL;
  }

  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == NULL) return fail(env, "Allocation error : not enough memory");
  size_t result = 0;
  for (uint32_t i = 0; i < count && !ZSTD_isError(result); i += 2) {
    napi_value parameter, value;
    int32_t p, v;
    if (napi_get_element(env, argv[3], i, &parameter) != napi_ok || napi_get_value_int32(env, parameter, &p) != napi_ok ||
        napi_get_element(env, argv[3], i + 1, &value) != napi_ok || napi_get_value_int32(env, value, &v) != napi_ok) {
      ZSTD_freeCCtx(cctx);
      napi_throw_type_error(env, NULL, "parameters must be integers");
      return NULL;
    }
    result = ZSTD_CCtx_setParameter(cctx, (ZSTD_cParameter)p, v);
  }
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_refPrefix_advanced(cctx, prefix, prefix_length, ZSTD_dct_rawContent);
  if (!ZSTD_isError(result)) result = ZSTD_compress2(cctx, output, output_length, target, target_length);
  // Freed here, not by a finalizer after a garbage collection: the tables go back as soon as the frame is made.
  ZSTD_freeCCtx(cctx);
#if defined(__GLIBC__)
  // And to the system, not only to malloc: glibc raises its mmap threshold to the size of each large
  // block freed (up to 32 MiB), so the next tables come from the heap, which keeps its free pages. A
  // publish of 14 incrementals of a 4 MB file held 40 MiB of them (docs/benchmarks.md, section 7).
  malloc_trim(0);
#endif
  if (ZSTD_isError(result)) return fail(env, ZSTD_getErrorName(result));

  napi_value written;
  if (napi_create_double(env, (double)result, &written) != napi_ok) return NULL;
  return written;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "compress", NAPI_AUTO_LENGTH, compress, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "compress", fn) != napi_ok) return NULL;
  return exports;
}
