#include "view_bytes.h"

namespace tcmu {

namespace {

size_t ElementSize(napi_typedarray_type type) {
  switch (type) {
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    default:
      return 1;
  }
}

}  // namespace

napi_status ViewBytes(napi_env env, napi_value value, void** data, size_t* length) {
  bool isTypedArray = false;
  napi_status status = napi_is_typedarray(env, value, &isTypedArray);
  if (status != napi_ok) return status;
  if (isTypedArray) {
    napi_typedarray_type type;
    size_t elements = 0;
    status = napi_get_typedarray_info(env, value, &type, &elements, data, nullptr, nullptr);
    if (status == napi_ok) *length = elements * ElementSize(type);
    return status;
  }
  bool isDataView = false;
  napi_is_dataview(env, value, &isDataView);
  if (!isDataView || napi_get_dataview_info(env, value, length, data, nullptr, nullptr) != napi_ok) return napi_invalid_arg;
  return napi_ok;
}

}  // namespace tcmu
