#pragma once
// Paths inside an instance's sandbox: the /opt/ml tree of the runtime contract
// (docs/runtime-contract.md §2). One spelling of each, for the backend that binds
// them, kilnd that names them in the runtime document, and kiln-entrypoint that
// uses them inside the instance.
//
// kiln-entrypoint may run with another root (KILN_ML_ROOT, e.g. a dry run outside
// a sandbox), and the host sees an instance's tree at <instance dir>/ml: Rebase()
// maps a path under kRoot to the same path under another root.
#include <string>
#include <string_view>

namespace kiln::sandbox {

inline constexpr char kRoot[] = "/opt/ml";

// Written by the entrypoint before the command starts (SageMaker's contract files).
inline constexpr char kInputDir[] = "/opt/ml/input";
inline constexpr char kInputConfigDir[] = "/opt/ml/input/config";
inline constexpr char kHyperparametersFile[] = "/opt/ml/input/config/hyperparameters.json";
inline constexpr char kResourceConfigFile[] = "/opt/ml/input/config/resourceconfig.json";
inline constexpr char kInputDataConfigFile[] = "/opt/ml/input/config/inputdataconfig.json";
// One directory per channel: kInputDataDir + "/" + <channel>.
inline constexpr char kInputDataDir[] = "/opt/ml/input/data";

// The job's outputs.
inline constexpr char kModelDir[] = "/opt/ml/model";
inline constexpr char kOutputDir[] = "/opt/ml/output";
inline constexpr char kOutputDataDir[] = "/opt/ml/output/data";
inline constexpr char kOutputIntermediateDir[] = "/opt/ml/output/intermediate";
inline constexpr char kFailureFile[] = "/opt/ml/output/failure";
inline constexpr char kMessageFile[] = "/opt/ml/output/message";
inline constexpr char kCheckpointsDir[] = "/opt/ml/checkpoints";
inline constexpr char kCodeDir[] = "/opt/ml/code";  // the command's working directory
// A warm pool's cache, kept across the jobs that reuse the pool (SageMaker's
// SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY).
inline constexpr char kWarmPoolCacheDir[] = "/opt/ml/sagemaker/warmpoolcache";
// SageMaker processing inputs and outputs live below it.
inline constexpr char kProcessingDir[] = "/opt/ml/processing";
// SageMaker's own processing-job marker (the entrypoint's context detection).
inline constexpr char kSageMakerProcessingConfigFile[] = "/opt/ml/config/processingjobconfig.json";

// Kiln's own files; the job must not touch them.
inline constexpr char kKilnDir[] = "/opt/ml/.kiln";
inline constexpr char kEntrypointBinary[] = "/opt/ml/.kiln/bin/kiln-entrypoint";
inline constexpr char kSourceArchive[] = "/opt/ml/.kiln/sourcedir.tar.gz";  // spec.code_archive
// kilnd's sockets, outside /opt/ml so the job cannot replace or redirect them: the
// runtime API (only /v1/runtime) and the instance's own StatsD datagram socket.
inline constexpr char kRunDir[] = "/run/kiln";
// Directories are bound, not the sockets: a kilnd restarted while the instance
// runs binds a new socket at the same path, which the instance then sees.
inline constexpr char kRuntimeDir[] = "/run/kiln/api";
inline constexpr char kRuntimeSocket[] = "/run/kiln/api/runtime.sock";
inline constexpr char kMetricsDir[] = "/run/kiln/metrics";
inline constexpr char kStatsdSocket[] = "/run/kiln/metrics/statsd.sock";
// The UDP port a private-network instance's StatsD clients send to on 127.0.0.1;
// kiln-entrypoint relays it to kStatsdSocket.
inline constexpr int kStatsdRelayPort = 8125;
inline constexpr char kExitFile[] = "/opt/ml/.kiln/exit.json";
// spec.uploads[i] is staged at kUploadsPrefix + std::to_string(i).
inline constexpr char kUploadsPrefix[] = "/opt/ml/.kiln/uploads/";

// `path` with a leading kRoot replaced by `root` ("/opt/ml/model" under "/tmp/ml" is
// "/tmp/ml/model"); any other path is returned as it is.
inline std::string Rebase(std::string_view root, std::string_view path) {
  constexpr std::string_view kRootView = kRoot;
  const bool under_root = path.substr(0, kRootView.size()) == kRootView &&
                          (path.size() == kRootView.size() || path[kRootView.size()] == '/');
  if (!under_root) return std::string(path);
  std::string out(root);
  out.append(path.substr(kRootView.size()));
  return out;
}

}  // namespace kiln::sandbox
