#pragma once
// Typed reads of one field of a JSON object, for the codecs of Kiln's own
// documents (event payloads, the supervisor's files, the runtime document).
// ReadField: absent or null leaves `out` at its default; present with another type
// is kInvalidArgument naming the field. RequireField: absent is an error too.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace kiln {

namespace json_fields_internal {
template <typename T>
bool HasType(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return v.is_string();
  } else if constexpr (std::is_same_v<T, bool>) {
    return v.is_boolean();
  } else if constexpr (std::is_floating_point_v<T>) {
    return v.is_number();
  } else if constexpr (std::is_unsigned_v<T>) {
    return v.is_number_unsigned();
  } else if constexpr (std::is_integral_v<T>) {
    return v.is_number_integer();
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!v.is_array()) return false;
    for (const auto& e : v)
      if (!e.is_string()) return false;
    return true;
  } else {
    static_assert(std::is_same_v<T, nlohmann::json>, "unsupported field type");
    return true;
  }
}
}  // namespace json_fields_internal

template <typename T>
Status ReadField(const nlohmann::json& j, const char* key, T& out) {
  if (!j.is_object()) return InvalidArgument(key, "not an object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!json_fields_internal::HasType<T>(*it)) return InvalidArgument(key, std::string(key) + " has the wrong type");
  out = it->template get<T>();
  return Status::Ok();
}

template <typename T>
Status RequireField(const nlohmann::json& j, const char* key, T& out) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null())
    return InvalidArgument(key, std::string(key) + " is required");
  return ReadField(j, key, out);
}

}  // namespace kiln
