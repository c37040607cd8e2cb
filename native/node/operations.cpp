#include "operations.h"

#include <type_traits>
#include <vector>

namespace simdnorm::node {

namespace {

uint64_t channelsOf(const Geometry& g) { return static_cast<uint64_t>(g.channels); }

// The two runningMean/runningVar arguments come as a pair: both null or both arrays.
void checkRunningPair(ArgReader& args, size_t meanIndex, const FloatView& runningMean,
                      const FloatView& runningVar) {
  if (static_cast<bool>(runningMean) != static_cast<bool>(runningVar)) {
    args.typeError(meanIndex + 1, "runningVar",
                   runningMean ? "a typed array when 'runningMean' is given"
                               : "null when 'runningMean' is null");
  }
}

}  // namespace

// ---- train -------------------------------------------------------------------------------

Train::Train(ArgReader& args) {
  x = args.floatsAnyLength(0, "x");
  geometry = args.geometry(1, x, 0, "x");
  const uint64_t c = channelsOf(geometry);
  gamma = args.floatsOrNull(4, "gamma", c, "channels");
  beta = args.floatsOrNull(5, "beta", c, "channels");
  eps = args.positiveFinite(6, "eps");
  relu = args.boolean(7, "relu");
  y = args.floats(8, "y", x.length, "x.length");
  mean = args.floats(9, "mean", c, "channels");
  invStd = args.floats(10, "invStd", c, "channels");
  runningMean = args.floatsOrNull(11, "runningMean", c, "channels");
  runningVar = args.floatsOrNull(12, "runningVar", c, "channels");
  checkRunningPair(args, 11, runningMean, runningVar);
  update.factor = args.unitInterval(13, "factor");
  update.varScale = args.nonNegativeFinite(14, "varScale");
  update.skipNonFinite = args.boolean(15, "skipNonFinite");
  type = args.type();
  // outputs y, mean, invStd, runningMean, runningVar; y may be exactly x
  args.checkOverlaps(bit(8) | bit(9) | bit(10) | bit(11) | bit(12), {8, 0});
}

template <typename T>
Train::Result Train::runAs() const {
  return trainForward<T>(x.as<T>(), geometry, gamma.as<T>(), beta.as<T>(), eps, relu, y.as<T>(),
                         mean.as<T>(), invStd.as<T>(), runningMean.as<T>(), runningVar.as<T>(),
                         update);
}

Train::Result Train::run() const {
  return type == FloatType::Float32 ? runAs<float>() : runAs<double>();
}

// ---- infer -------------------------------------------------------------------------------

Infer::Infer(ArgReader& args) {
  x = args.floatsAnyLength(0, "x");
  geometry = args.geometry(1, x, 0, "x");
  const uint64_t c = channelsOf(geometry);
  runningMean = args.floats(4, "runningMean", c, "channels");
  runningVar = args.floats(5, "runningVar", c, "channels");
  gamma = args.floatsOrNull(6, "gamma", c, "channels");
  beta = args.floatsOrNull(7, "beta", c, "channels");
  eps = args.positiveFinite(8, "eps");
  relu = args.boolean(9, "relu");
  y = args.floats(10, "y", x.length, "x.length");
  type = args.type();
  args.checkOverlaps(bit(10), {10, 0});  // y may be exactly x
}

template <typename T>
Infer::Result Infer::runAs() const {
  inferForward<T>(x.as<T>(), geometry, runningMean.as<T>(), runningVar.as<T>(), gamma.as<T>(),
                  beta.as<T>(), eps, relu, y.as<T>());
  return {};
}

Infer::Result Infer::run() const {
  return type == FloatType::Float32 ? runAs<float>() : runAs<double>();
}

// ---- backward ----------------------------------------------------------------------------

Backward::Backward(ArgReader& args) {
  dy = args.floatsAnyLength(0, "dy");
  x = args.floatsAnyLength(1, "x");
  geometry = args.geometry(2, dy, 0, "dy");
  args.checkLength(1, "x", x, dy.length, "dy.length");
  const uint64_t c = channelsOf(geometry);
  mean = args.floats(5, "mean", c, "channels");
  invStd = args.floats(6, "invStd", c, "channels");
  gamma = args.floatsOrNull(7, "gamma", c, "channels");
  y = args.floatsOrNull(8, "y", dy.length, "dy.length");
  training = args.boolean(9, "training");
  dx = args.floats(10, "dx", dy.length, "dy.length");
  dgamma = args.floats(11, "dgamma", c, "channels");
  dbeta = args.floats(12, "dbeta", c, "channels");
  type = args.type();
  args.checkOverlaps(bit(10) | bit(11) | bit(12), {10, 0});  // dx may be exactly dy
}

template <typename T>
Backward::Result Backward::runAs() const {
  backward<T>(dy.as<T>(), x.as<T>(), geometry, mean.as<T>(), invStd.as<T>(), gamma.as<T>(),
              y.as<T>(), training, dx.as<T>(), dgamma.as<T>(), dbeta.as<T>());
  return {};
}

Backward::Result Backward::run() const {
  return type == FloatType::Float32 ? runAs<float>() : runAs<double>();
}

// ---- moments -----------------------------------------------------------------------------

Moments::Moments(ArgReader& args) {
  x = args.floatsAnyLength(0, "x");
  geometry = args.geometry(1, x, 0, "x");
  const uint64_t c = channelsOf(geometry);
  mean = args.floats(4, "mean", c, "channels");
  variance = args.floats(5, "variance", c, "channels");
  type = args.type();
  args.checkOverlaps(bit(4) | bit(5));
}

template <typename T>
Moments::Result Moments::runAs() const {
  channelMoments<T>(x.as<T>(), geometry, mean.as<T>(), variance.as<T>());
  return {};
}

Moments::Result Moments::run() const {
  return type == FloatType::Float32 ? runAs<float>() : runAs<double>();
}

// ---- updateRunningStats ------------------------------------------------------------------

UpdateRunningStats::UpdateRunningStats(ArgReader& args) {
  runningMean = args.floatsAnyLength(0, "runningMean");
  const uint64_t c = runningMean.length;
  runningVar = args.floats(1, "runningVar", c, "runningMean.length");
  batchMean = args.floats(2, "batchMean", c, "runningMean.length");
  batchVar = args.floats(3, "batchVar", c, "runningMean.length");
  update.factor = args.unitInterval(4, "factor");
  update.varScale = args.nonNegativeFinite(5, "varScale");
  update.skipNonFinite = args.boolean(6, "skipNonFinite");
  type = args.type();
  args.checkOverlaps(bit(0) | bit(1));  // the running stats are written
}

template <typename T>
UpdateRunningStats::Result UpdateRunningStats::runAs() const {
  const auto channels = static_cast<int64_t>(runningMean.length);
  // The kernel takes the batch variance in double (trainForward keeps it that wide).
  const double* batchVarWide;
  std::vector<double> widened;
  if constexpr (std::is_same_v<T, double>) {
    batchVarWide = batchVar.as<double>();
  } else {
    widened.assign(batchVar.as<T>(), batchVar.as<T>() + channels);
    batchVarWide = widened.data();
  }
  return simdnorm::updateRunningStats<T>(runningMean.as<T>(), runningVar.as<T>(),
                                         batchMean.as<T>(), batchVarWide, channels,
                                         update.factor, update.varScale, update.skipNonFinite);
}

UpdateRunningStats::Result UpdateRunningStats::run() const {
  return type == FloatType::Float32 ? runAs<float>() : runAs<double>();
}

}  // namespace simdnorm::node
