#include "smapi/server.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "common/fsutil.h"
#include "common/ids.h"
#include "common/json_input.h"
#include "smapi/service_model.h"

namespace kiln::smapi {
namespace {

using nlohmann::json;

const char* kTargetPrefix = "SageMaker.";

Reply Error(int http, const std::string& type, const std::string& message) {
  Reply r;
  r.http_status = http;
  r.error_type = type;
  r.body = {{"__type", type}, {"message", message}};
  return r;
}

Reply FromStatus(const Status& st) {
  if (st.code() == Code::kNotFound && st.message().rfind("RN:", 0) == 0)
    return Error(400, "ResourceNotFound", st.message().substr(3));
  switch (st.code()) {
    case Code::kAlreadyExists:
      return Error(400, "ResourceInUse", st.message());
    case Code::kPayloadTooLarge:
      return Error(413, "ValidationException", st.message());
    case Code::kUnauthenticated:
    case Code::kPermissionDenied:
      return Error(403, "AccessDeniedException", st.message());
    case Code::kUnavailable:
      return Error(503, "ServiceUnavailable", st.message());
    case Code::kInternal:
      return Error(500, "InternalFailure", st.message());
    default:
      return Error(400, "ValidationException", st.message());
  }
}

Reply Ok(json body) {
  Reply r;
  r.body = std::move(body);
  return r;
}

TimeMs EpochMs(const json& v) {
  return static_cast<TimeMs>(v.get<double>() * 1000.0);
}

const char* Resource(JobKind k) {
  return k == JobKind::kProcessing ? "processing-job" : "training-job";
}
const char* Noun(JobKind k) {
  return k == JobKind::kProcessing ? "processing job" : "training job";
}

// A page of `rows` from the offset in NextToken.
Result<json> Page(const std::vector<json>& rows, const json& body, size_t default_limit, const char* key) {
  size_t start = 0;
  if (body.contains("NextToken")) {
    try {
      start = std::stoul(body["NextToken"].get<std::string>());
    } catch (...) {
      return InvalidArgument("NextToken", "NextToken: invalid token");
    }
  }
  size_t limit = body.value("MaxResults", default_limit);
  json out = {{key, json::array()}};
  for (size_t i = start; i < rows.size() && i < start + limit; ++i) out[key].push_back(rows[i]);
  if (start + limit < rows.size()) out["NextToken"] = std::to_string(start + limit);
  return out;
}

}  // namespace

Result<AccessKey> BootstrapAdminKey(AccessKeys& keys, const std::string& path) {
  auto all = keys.List("");
  if (!all.ok()) return all.status();
  std::string admin_id;
  for (const auto& k : *all)
    if (k.role == Role::kAdmin) admin_id = k.id;
  Result<AccessKey> admin = admin_id.empty() ? keys.Create("default", Role::kAdmin) : keys.Lookup(admin_id);
  if (!admin.ok()) return admin.status();
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) KILN_RETURN_IF_ERROR(WriteFileAtomic(path, CredentialsFile(*admin), 0600));
  return admin;
}

void SageMakerApi::Register(http::RouteTable& server) {
  server.Handle("POST", "/", http::ReadBody::kYes,
                [this](const httplib::Request& req, httplib::Response& res) -> std::shared_ptr<http::StreamSource> {
                  SigV4Request r;
                  r.method = req.method;
                  r.path = req.path;
                  for (const auto& [k, v] : req.params) r.query.emplace_back(k, v);
                  for (const auto& [k, v] : req.headers)
                    if (k != "REMOTE_ADDR" && k != "REMOTE_PORT" && k != "LOCAL_ADDR" && k != "LOCAL_PORT")
                      r.headers.emplace_back(k, v);
                  r.body = req.body;
                  Reply reply = Handle(r, req.remote_addr);
                  res.status = reply.http_status;
                  res.set_header("x-amzn-RequestId", NewId("req").substr(4));
                  if (!reply.error_type.empty()) res.set_header("x-amzn-ErrorType", reply.error_type);
                  res.set_content(reply.body.dump(-1, ' ', false, json::error_handler_t::replace),
                                  "application/x-amz-json-1.1");
                  return nullptr;
                });
}

bool IsMutating(const std::string& op) {
  return op.rfind("Describe", 0) != 0 && op.rfind("List", 0) != 0;
}

// The value of header `name` (lower case), "" if absent.
static std::string HeaderOf(const SigV4Request& req, const char* name) {
  for (const auto& [k, v] : req.headers)
    if (strcasecmp(k.c_str(), name) == 0) return v;
  return "";
}

Reply SageMakerApi::Handle(const SigV4Request& req, const std::string& source) {
  if (req.body.size() > opts_.max_body_bytes)
    return Error(413, "ValidationException",
                 "request body is " + std::to_string(req.body.size()) + " bytes; the limit is " +
                     std::to_string(opts_.max_body_bytes));
  AccessKey caller;
  auto verified = VerifySigV4(
      req,
      [&](const std::string& id, std::string* secret) {
        auto k = keys_.Lookup(id);
        if (!k.ok()) return false;
        caller = *k;
        *secret = k->secret;
        return true;
      },
      clock_.NowMs());
  if (!verified.ok) {
    int http = verified.failure.error == SigV4Error::kMissingAuthenticationToken ? 403 : 400;
    if (verified.failure.error == SigV4Error::kSignatureDoesNotMatch ||
        verified.failure.error == SigV4Error::kRequestExpired)
      http = 403;
    return Error(http, AwsErrorCode(verified.failure.error), verified.failure.message);
  }
  if (auto refused = CheckScope(req)) return *refused;
  std::string target;
  for (const auto& [k, v] : req.headers)
    if (k.size() == 12 && strcasecmp(k.c_str(), "X-Amz-Target") == 0) target = v;
  if (target.rfind(kTargetPrefix, 0) != 0)
    return Error(400, "UnknownOperationException",
                 target.empty() ? "missing X-Amz-Target header" : "unknown target '" + target + "'");
  std::string op = target.substr(strlen(kTargetPrefix));
  auto parsed = ParseUntrustedJson(req.body.empty() ? std::string_view("{}") : std::string_view(req.body));
  if (!parsed.ok()) return Error(400, "SerializationException", parsed.status().message());
  if (!parsed->is_object()) return Error(400, "SerializationException", "request body is not a JSON object");
  // A mutating request is carried out once: the same signed request sent again
  // within the skew window is refused (reads may repeat).
  const bool mutating = IsMutating(op);
  std::string signature;
  if (mutating) {
    auto auth = ParseAuthorization(HeaderOf(req, "authorization"));
    signature = auth.ok() ? auth->signature : "";
    const TimeMs now = clock_.NowMs();
    switch (replays_.Use(signature, now + 2 * kMaxClockSkewMs, now)) {
      case Claim::kFirst:
        break;
      case Claim::kReplayed:
        return Error(403, "InvalidSignatureException",
                     "this signed request was already carried out; a request that changes something is accepted "
                     "once (sign it again)");
      case Claim::kFull:
        return Error(400, "ThrottlingException", "too many signed requests in the last 30 minutes; retry later");
    }
  }
  Reply reply = Dispatch(op, *parsed, caller);
  if (mutating && reply.http_status >= 500) replays_.Forget(signature);  // not carried out: a retry is no replay
  if (mutating) {
    AuditRecord a{0,      clock_.NowMs(),   caller.id, caller.id, caller.team, "POST", "SageMaker." + op.substr(0, 128),
                  source, reply.http_status};
    if (auto seq = store_.AppendAudit(a); !seq.ok())
      fprintf(stderr, "kilnd: audit: %s\n", seq.status().ToString().c_str());
  }
  return reply;
}

std::optional<Reply> SageMakerApi::CheckScope(const SigV4Request& req) const {
  auto auth = ParseAuthorization(HeaderOf(req, "authorization"));
  if (!auth.ok()) return Error(400, "IncompleteSignatureException", auth.status().message());
  if (auth->service != "sagemaker")
    return Error(403, "InvalidSignatureException",
                 "Credential should be scoped to correct service: 'sagemaker', not '" + auth->service + "'");
  if (auth->region != opts_.ctx.region)
    return Error(403, "InvalidSignatureException",
                 "Credential should be scoped to a valid region: this Kiln is '" + opts_.ctx.region + "', not '" +
                     auth->region + "' (sagemaker.region)");
  // The operation is the target: unsigned, a captured request could be sent as another operation.
  const auto& sh = auth->signed_headers;
  if (!HeaderOf(req, "x-amz-target").empty() && std::find(sh.begin(), sh.end(), "x-amz-target") == sh.end())
    return Error(400, "IncompleteSignatureException", "'X-Amz-Target' must be a signed header");
  return std::nullopt;
}

const std::set<std::string>& SageMakerApi::ServedOperations() {
  static const std::set<std::string> kServed = {"CreateTrainingJob",
                                                "DescribeTrainingJob",
                                                "StopTrainingJob",
                                                "ListTrainingJobs",
                                                "UpdateTrainingJob",
                                                "CreateProcessingJob",
                                                "DescribeProcessingJob",
                                                "StopProcessingJob",
                                                "ListProcessingJobs",
                                                "AddTags",
                                                "ListTags",
                                                "DeleteTags",
                                                "CreateHyperParameterTuningJob",
                                                "DescribeHyperParameterTuningJob",
                                                "ListHyperParameterTuningJobs",
                                                "StopHyperParameterTuningJob",
                                                "ListTrainingJobsForHyperParameterTuningJob"};
  return kServed;
}

Reply SageMakerApi::Dispatch(const std::string& op, const json& body, const AccessKey& caller) {
  const ServiceModel& model = ServiceModel::SageMaker();
  if (!ServedOperations().count(op) || (op.find("HyperParameterTuningJob") != std::string::npos && !tuning_))
    return Error(400, "UnknownOperationException",
                 "operation " + op + (model.HasOperation(op) ? " is not supported by Kiln yet" : " is unknown"));
  if (Status st = model.ValidateInput(op, body); !st.ok()) return Error(400, "ValidationException", st.message());
  if (IsMutating(op) && caller.role < Role::kMember)
    return Error(403, "AccessDeniedException",
                 "access key " + caller.id + " has the role " + ToString(caller.role) + ", which may not call " + op);

  Result<json> out = json::object();
  if (op == "CreateTrainingJob") {
    out = CreateJob(JobKind::kTraining, body, caller);
  } else if (op == "CreateProcessingJob") {
    out = CreateJob(JobKind::kProcessing, body, caller);
  } else if (op == "DescribeTrainingJob") {
    auto job = FindJob(JobKind::kTraining, body["TrainingJobName"], caller);
    if (!job.ok()) return FromStatus(job.status());
    auto points = store_.JobMetrics(job->id, "");
    out = DescribeTrainingJob(*job, opts_.ctx, points.ok() ? *points : std::vector<MetricPoint>{});
  } else if (op == "DescribeProcessingJob") {
    auto job = FindJob(JobKind::kProcessing, body["ProcessingJobName"], caller);
    if (!job.ok()) return FromStatus(job.status());
    out = DescribeProcessingJob(*job, opts_.ctx);
  } else if (op == "StopTrainingJob") {
    out = StopJob(JobKind::kTraining, body["TrainingJobName"], caller);
  } else if (op == "StopProcessingJob") {
    out = StopJob(JobKind::kProcessing, body["ProcessingJobName"], caller);
  } else if (op == "ListTrainingJobs") {
    out = ListJobs(JobKind::kTraining, body, caller);
  } else if (op == "ListProcessingJobs") {
    out = ListJobs(JobKind::kProcessing, body, caller);
  } else if (op == "UpdateTrainingJob") {
    auto job = FindJob(JobKind::kTraining, body["TrainingJobName"], caller);
    if (!job.ok()) return FromStatus(job.status());
    if (body.contains("ProfilerConfig") || body.contains("ProfilerRuleConfigurations"))
      return Error(400, "ValidationException", "ProfilerConfig: Kiln has no SageMaker Debugger/profiler");
    if (body.contains("ResourceConfig")) {
      const json& rc = body["ResourceConfig"];
      if (!rc.is_object() || !rc.contains("KeepAlivePeriodInSeconds") ||
          !rc["KeepAlivePeriodInSeconds"].is_number_integer())
        return Error(400, "ValidationException",
                     "ResourceConfig.KeepAlivePeriodInSeconds: required, an integer number of seconds");
      auto updated = ctl_.UpdateKeepAlive(job->id, rc["KeepAlivePeriodInSeconds"].get<int64_t>());
      if (!updated.ok()) {
        if (updated.status().code() == Code::kInvalidArgument)
          return Error(400, "ValidationException",
                       "ResourceConfig.KeepAlivePeriodInSeconds: " + updated.status().message());
        if (updated.status().code() == Code::kFailedPrecondition)
          return Error(400, "ValidationException", updated.status().message());
        return FromStatus(updated.status());
      }
    }
    out = json{{"TrainingJobArn", Arn(opts_.ctx, "training-job", job->spec.name)}};
  } else if (op == "AddTags") {
    out = AddTags(body, caller);
  } else if (op == "ListTags") {
    out = ListTags(body, caller);
  } else if (op == "DeleteTags") {
    out = DeleteTags(body, caller);
  } else {
    out = Tuning(op, body, caller);
  }
  if (!out.ok()) return FromStatus(out.status());
  return Ok(*out);
}

Result<json> SageMakerApi::CreateJob(JobKind kind, const json& body, const AccessKey& caller) {
  auto spec = kind == JobKind::kTraining ? TrainingSpec(body, opts_.ctx, caller.team)
                                         : ProcessingSpec(body, opts_.ctx, caller.team);
  if (!spec.ok()) return spec.status();
  auto job = ctl_.CreateJob(*spec);
  const std::string arn = Arn(opts_.ctx, Resource(kind), spec->name);
  if (!job.ok()) {
    if (job.status().code() == Code::kAlreadyExists)
      return Status(Code::kAlreadyExists, std::string(kind == JobKind::kTraining ? "Training" : "Processing") +
                                              " job names must be unique within an AWS account and region, and a " +
                                              Noun(kind) + " with this name already exists (" + arn + ")");
    return job.status();
  }
  return json{{kind == JobKind::kTraining ? "TrainingJobArn" : "ProcessingJobArn", arn}};
}

Result<Job> SageMakerApi::FindJob(JobKind kind, const std::string& name, const AccessKey& caller) {
  auto job = store_.GetJob(name);
  if (!job.ok() || job->spec.name != name || job->spec.kind != kind || (!PrincipalOf(caller).Sees(job->spec.team))) {
    if (!job.ok() && job.status().code() != Code::kNotFound) return job.status();
    return Status(Code::kNotFound, kind == JobKind::kTraining ? "Requested resource not found."
                                                              : "Could not find requested job with name " + name);
  }
  return job;
}

Result<json> SageMakerApi::StopJob(JobKind kind, const std::string& name, const AccessKey& caller) {
  auto job = FindJob(kind, name, caller);
  if (!job.ok()) return job.status();
  if (job->status != JobStatus::kInProgress)
    return InvalidArgument("", std::string("The request was rejected because the ") + Noun(kind) + " is in status " +
                                   ToString(job->status) + ".");
  auto r = ctl_.StopJob(job->id);
  if (!r.ok()) return r.status();
  return json::object();
}

Result<json> SageMakerApi::ListJobs(JobKind kind, const json& body, const AccessKey& caller) {
  ListQuery q;
  q.kind = kind;
  if (caller.role != Role::kAdmin) q.team = caller.team;
  if (body.contains("NameContains")) q.name_contains = body["NameContains"];
  if (body.contains("StatusEquals")) q.status = ParseSageMakerStatus(body["StatusEquals"]);
  if (body.contains("CreationTimeAfter")) q.created_after = EpochMs(body["CreationTimeAfter"]);
  if (body.contains("CreationTimeBefore")) q.created_before = EpochMs(body["CreationTimeBefore"]);
  if (body.contains("WarmPoolStatusEquals")) {
    const json& w = body["WarmPoolStatusEquals"];
    q.warm_pool_status = w.is_string() ? ParseWarmPoolStatus(w.get<std::string>()) : std::nullopt;
    if (!q.warm_pool_status)
      return InvalidArgument("WarmPoolStatusEquals",
                             "WarmPoolStatusEquals: must be one of Available, Terminated, Reused, InUse");
  }
  for (const char* unsupported : {"LastModifiedTimeAfter", "LastModifiedTimeBefore"})
    if (body.contains(unsupported))
      return InvalidArgument(unsupported, std::string(unsupported) + ": filter not supported by Kiln");
  const std::string by = body.value("SortBy", "CreationTime");
  const bool asc = body.value("SortOrder", "Descending") == "Ascending";
  if (by == "Name") {
    q.order = asc ? ListOrder::kNameAsc : ListOrder::kNameDesc;
  } else if (by == "Status") {
    q.order = asc ? ListOrder::kStatusAsc : ListOrder::kStatusDesc;
  } else {
    q.order = asc ? ListOrder::kOldestFirst : ListOrder::kNewestFirst;
  }
  q.limit = body.value("MaxResults", 10);
  if (body.contains("NextToken")) q.page_token = body["NextToken"];
  auto page = store_.ListJobs(q);
  if (!page.ok()) {
    if (page.status().code() == Code::kInvalidArgument) return InvalidArgument("NextToken", "NextToken: invalid token");
    return page.status();
  }
  json list = json::array();
  for (const auto& j : page->jobs)
    list.push_back(kind == JobKind::kTraining ? TrainingJobSummary(j, opts_.ctx) : ProcessingJobSummary(j, opts_.ctx));
  json out = {{kind == JobKind::kTraining ? "TrainingJobSummaries" : "ProcessingJobSummaries", list}};
  if (!page->next_page_token.empty()) out["NextToken"] = page->next_page_token;
  return out;
}

Result<SageMakerApi::Tagged> SageMakerApi::FindTagged(const std::string& arn, const AccessKey& caller) {
  auto parsed = ParseArn(arn);
  if (!parsed.ok()) return parsed.status();
  const auto& [resource, name] = *parsed;
  const Status missing(Code::kNotFound, StrCat("Requested resource not found: ", arn));
  if (resource == "hyper-parameter-tuning-job") {
    if (!tuning_) return missing;
    auto job = FindTuning(name, caller);
    if (!job.ok()) return job.status().code() == Code::kNotFound ? missing : job.status();
    return Tagged{"", job->spec.name, job->spec.tags};
  }
  if (resource != "training-job" && resource != "processing-job")
    return InvalidArgument("ResourceArn",
                           "ResourceArn: Kiln tags training, processing and hyperparameter tuning jobs only");
  auto job = FindJob(resource == "training-job" ? JobKind::kTraining : JobKind::kProcessing, name, caller);
  if (!job.ok()) return job.status().code() == Code::kNotFound ? missing : job.status();
  return Tagged{job->id, "", job->spec.tags};
}

Status SageMakerApi::UpdateTags(const Tagged& r, const std::map<std::string, std::string>& add,
                                const std::vector<std::string>& remove) {
  return r.tuning_name.empty() ? store_.UpdateTags(r.job_id, add, remove)
                               : store_.UpdateTuningTags(r.tuning_name, add, remove);
}

Result<json> SageMakerApi::AddTags(const json& body, const AccessKey& caller) {
  auto res = FindTagged(body["ResourceArn"], caller);
  if (!res.ok()) return res.status();
  std::map<std::string, std::string> add;
  for (const auto& t : body["Tags"]) {
    std::string k = t["Key"];
    if (k.rfind("aws:", 0) == 0) return InvalidArgument("Tags", "Tags: the aws: prefix is reserved");
    add[k] = t.value("Value", "");
  }
  std::map<std::string, std::string> merged = res->tags;
  for (const auto& [k, v] : add) merged[k] = v;
  if (merged.size() > kMaxTags)
    return InvalidArgument("Tags", "Tags: a resource can have at most " + std::to_string(kMaxTags) + " tags");
  KILN_RETURN_IF_ERROR(UpdateTags(*res, add, {}));
  return json{{"Tags", body["Tags"]}};
}

Result<json> SageMakerApi::ListTags(const json& body, const AccessKey& caller) {
  auto res = FindTagged(body["ResourceArn"], caller);
  if (!res.ok()) return res.status();
  std::vector<json> tags;
  tags.reserve(res->tags.size());
  for (const auto& [k, v] : res->tags) tags.push_back({{"Key", k}, {"Value", v}});
  return Page(tags, body, 50, "Tags");
}

Result<json> SageMakerApi::DeleteTags(const json& body, const AccessKey& caller) {
  auto res = FindTagged(body["ResourceArn"], caller);
  if (!res.ok()) return res.status();
  std::vector<std::string> keys = body["TagKeys"];
  KILN_RETURN_IF_ERROR(UpdateTags(*res, {}, keys));
  return json::object();
}

Result<tuning::TuningJob> SageMakerApi::FindTuning(const std::string& name, const AccessKey& caller) {
  auto job = tuning_->Get(name);
  if (!job.ok() || (!PrincipalOf(caller).Sees(job->spec.team))) {
    if (!job.ok() && job.status().code() != Code::kNotFound) return job.status();
    return Status(Code::kNotFound, "Amazon SageMaker can't find a tuning job with name " + name);
  }
  return job;
}

Result<json> SageMakerApi::Tuning(const std::string& op, const json& body, const AccessKey& caller) {
  if (op == "CreateHyperParameterTuningJob") {
    auto spec = TuningSpecFromRequest(body, opts_.ctx, caller.team);
    if (!spec.ok()) return spec.status();
    auto job = tuning_->Create(*spec);
    const std::string arn = Arn(opts_.ctx, "hyper-parameter-tuning-job", spec->name);
    if (!job.ok()) {
      if (job.status().code() == Code::kAlreadyExists)
        return Status(Code::kAlreadyExists,
                      "Hyperparameter tuning job names must be unique within an AWS account and region, and a tuning "
                      "job with this name already exists (" +
                          arn + ")");
      return job.status();
    }
    return json{{"HyperParameterTuningJobArn", arn}};
  }
  if (op == "ListHyperParameterTuningJobs") {
    for (const char* unsupported : {"LastModifiedTimeAfter", "LastModifiedTimeBefore"})
      if (body.contains(unsupported))
        return InvalidArgument(unsupported, std::string(unsupported) + ": filter not supported by Kiln");
    auto recs = store_.ListTuningJobs(body.value("NameContains", ""), body.value("StatusEquals", ""), 10000, 0);
    if (!recs.ok()) return recs.status();
    std::vector<json> rows;
    for (const auto& r : *recs) {
      auto job = tuning::LoadTuningJob(r);
      if (!job.ok() || (!PrincipalOf(caller).Sees(job->spec.team))) continue;
      if (body.contains("CreationTimeAfter") && job->state.created <= EpochMs(body["CreationTimeAfter"])) continue;
      if (body.contains("CreationTimeBefore") && job->state.created >= EpochMs(body["CreationTimeBefore"])) continue;
      auto trials = tuning_->Trials(*job);
      rows.push_back(TuningJobSummary(*job, trials.ok() ? *trials : std::vector<tuning::TrialView>{}, opts_.ctx));
    }
    const std::string by = body.value("SortBy", "CreationTime");
    const bool asc = body.value("SortOrder", "Descending") == "Ascending";
    const char* key = by == "Name"     ? "HyperParameterTuningJobName"
                      : by == "Status" ? "HyperParameterTuningJobStatus"
                                       : "CreationTime";
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const json& a, const json& b) { return asc ? a[key] < b[key] : b[key] < a[key]; });
    return Page(rows, body, 100, "HyperParameterTuningJobSummaries");
  }
  auto job = FindTuning(body["HyperParameterTuningJobName"], caller);
  if (!job.ok()) {
    // The tuning operations call a missing job ResourceNotFound (botocore's model).
    if (job.status().code() == Code::kNotFound) return Status(Code::kNotFound, "RN:" + job.status().message());
    return job.status();
  }
  if (op == "StopHyperParameterTuningJob") {
    Status st = tuning_->Stop(job->spec.name);
    if (st.code() == Code::kFailedPrecondition)
      return InvalidArgument("", "The request was rejected because the tuning job is in status " +
                                     std::string(tuning::ToString(job->state.status)) + ".");
    KILN_RETURN_IF_ERROR(st);
    return json::object();
  }
  auto trials = tuning_->Trials(*job);
  if (!trials.ok()) return trials.status();
  if (op == "DescribeHyperParameterTuningJob") {
    json d = DescribeTuningJob(*job, *trials, opts_.ctx);
    if (job->spec.warm_start == tuning::WarmStartType::kIdenticalDataAndAlgorithm) {
      // The best trial of this job and its parents together.
      const double sign = job->spec.direction == hpo::Direction::kMaximize ? -1 : 1;
      std::optional<std::pair<double, json>> overall;
      auto consider = [&](const tuning::TuningJob& owner, const std::vector<tuning::TrialView>& ts) {
        const int b = tuning::BestTrial(owner.spec, ts);
        if (b < 0) return;
        const auto& t = ts[static_cast<size_t>(b)];
        const double v = sign * *tuning::Objective(t);
        if (!overall || v < overall->first) overall = {v, TrialSummary(owner, t, opts_.ctx)};
      };
      consider(*job, *trials);
      for (const auto& p : job->spec.parents) {
        auto parent = tuning_->Get(p);
        if (parent.ok()) consider(*parent, tuning_->FinishedParentTrials(p));
      }
      if (overall) d["OverallBestTrainingJob"] = overall->second;
    }
    return d;
  }
  // ListTrainingJobsForHyperParameterTuningJob
  std::vector<json> rows;
  for (const auto& t : *trials) {
    if (body.contains("StatusEquals") && body["StatusEquals"] != SageMakerStatus(t.status)) continue;
    rows.push_back(TrialSummary(*job, t, opts_.ctx));
  }
  const std::string by = body.value("SortBy", "CreationTime");
  const bool asc = body.value("SortOrder", "Descending") == "Ascending";
  auto value = [&](const json& r) -> json {
    if (by == "Name") return r["TrainingJobName"];
    if (by == "Status") return r["TrainingJobStatus"];
    if (by == "FinalObjectiveMetricValue")  // trials without a value sort last
      return r.contains("FinalHyperParameterTuningJobObjectiveMetric")
                 ? r["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
                 : json(asc ? 1e308 : -1e308);
    return r["CreationTime"];
  };
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const json& a, const json& b) { return asc ? value(a) < value(b) : value(b) < value(a); });
  return Page(rows, body, 10, "TrainingJobSummaries");
}

}  // namespace kiln::smapi
