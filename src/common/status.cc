#include "common/status.h"

namespace kiln {

const char* CodeName(Code c) {
  switch (c) {
    case Code::kOk:
      return "Ok";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kNotFound:
      return "NotFound";
    case Code::kAlreadyExists:
      return "AlreadyExists";
    case Code::kPayloadTooLarge:
      return "PayloadTooLarge";
    case Code::kUnauthenticated:
      return "Unauthenticated";
    case Code::kFailedPrecondition:
      return "FailedPrecondition";
    case Code::kUnavailable:
      return "Unavailable";
    case Code::kInternal:
      return "Internal";
    case Code::kDataLoss:
      return "DataLoss";
    case Code::kResourceExhausted:
      return "ResourceExhausted";
    case Code::kPermissionDenied:
      return "PermissionDenied";
    case Code::kUnsupportedMediaType:
      return "UnsupportedMediaType";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  if (!field_.empty()) s += " (" + field_ + ")";
  return s + ": " + message_;
}

}  // namespace kiln
