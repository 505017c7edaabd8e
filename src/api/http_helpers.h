#pragma once
// Request and response helpers shared by the native API's route files
// (native_api.cc, *_routes.cc). Internal to src/api: not part of its interface.
#include <httplib.h>

#include <nlohmann/json.hpp>

namespace kiln::api_internal {

// Sends `j` as the body with `status`. Invalid UTF-8 in strings is replaced, never thrown on.
void SendJson(httplib::Response& res, int status, const nlohmann::json& j);

// A boolean query parameter: "1", "true" and "yes" are true, any other value false,
// and an absent one `def`.
bool BoolParam(const httplib::Request& req, const char* name, bool def);

}  // namespace kiln::api_internal
