#pragma once
// Errors are values. A Status says what the caller should do next through its code:
//   kInvalidArgument / kNotFound / kAlreadyExists / kPayloadTooLarge: fix the request;
//   kUnavailable: retry the call later; kFailedPrecondition: fix state first;
//   kInternal: a bug or an unexpected environment failure;
//   kDataLoss: stored data cannot be decoded: retrying will not help, repair it.
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kiln {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPayloadTooLarge,
  kUnauthenticated,
  kFailedPrecondition,
  kUnavailable,
  kInternal,
  kDataLoss,
  kResourceExhausted,     // no capacity now; the same request may succeed later
  kPermissionDenied,      // authenticated, but this principal may not do this
  kUnsupportedMediaType,  // a body in a format the route does not take (JSON only)
};

const char* CodeName(Code c);

// [[nodiscard]]: a dropped Status is a lost error. Where ignoring one is right, say
// why with IgnoreError().
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, std::string field = {})
      : code_(code), message_(std::move(message)), field_(std::move(field)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // For validation errors: the offending field as a dotted path ("instance.count").
  const std::string& field() const { return field_; }
  std::string ToString() const;
  // Marks a deliberate drop (the caller has nothing better to do with the error).
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::string field_;
};

inline Status InvalidArgument(std::string field, std::string msg) {
  return Status(Code::kInvalidArgument, std::move(msg), std::move(field));
}
inline Status NotFound(std::string msg) {
  return Status(Code::kNotFound, std::move(msg));
}
inline Status Internal(std::string msg) {
  return Status(Code::kInternal, std::move(msg));
}
inline Status DataLoss(std::string msg) {
  return Status(Code::kDataLoss, std::move(msg));
}
inline Status Unavailable(std::string msg) {
  return Status(Code::kUnavailable, std::move(msg));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  void IgnoreError() const {}

 private:
  std::variant<T, Status> v_;
};

#define KILN_RETURN_IF_ERROR(expr) \
  do {                             \
    ::kiln::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)

// Concatenates strings without temporaries: StrCat("a", b, "c").
template <typename... Parts>
std::string StrCat(const Parts&... parts) {
  std::string out;
  (out.append(parts), ...);
  return out;
}

}  // namespace kiln
