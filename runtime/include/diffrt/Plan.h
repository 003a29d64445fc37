//===- Plan.h - the compiled program an artifact carries --------*- C++ -*-===//
//
// The in-memory form of a .dfx artifact: the model description, the three
// memory regions, every value's place, the parameter table (checkpoint names),
// and the entry points as lists of kernels. The compiler fills a Plan and
// writes it with writeArtifact; the runtime reads it back with
// readArtifact, which validates every field.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_PLAN_H
#define DIFFRT_PLAN_H

#include "diffrt/DType.h"

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace diffrt {

/// Where a value lives. Weights are loaded from checkpoints and stay
/// resident; constants are computed once per session by the "init" entry;
/// the arena holds inputs, activations and outputs of one call.
enum class Region : uint32_t { Weights = 0, Constants = 1, Arena = 2 };
const char *regionName(Region r);

/// A tensor of the program: a row-major array of `rows()` rows of `cols()`
/// elements each, consecutive rows `ld` elements apart (ld > cols for a
/// column slice of a wider tensor).
struct ValueDesc {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  Region region = Region::Arena;
  uint64_t offset = 0;
  int64_t ld = 0;

  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const;
  int64_t numel() const { return rows() * cols(); }
  /// Bytes from the first element to one past the last.
  uint64_t extentBytes() const;
  bool contiguous() const { return ld == cols(); }
};

/// A parameter loaded from checkpoints by name. A name containing "{e}" is
/// a stacked parameter: slice e of the leading dimension is the checkpoint
/// tensor whose name has "{e}" replaced by e.
struct ParamDesc {
  int32_t value = -1;
  std::string name;
};

/// Computed state that reference checkpoints also store (the position
/// table, MicroDiT's zero mask token): accepted in a checkpoint and checked
/// against what the runtime computes. `value` is -1 for state that has no
/// value of its own (a zero fill).
struct StateDesc {
  std::string name;
  int32_t value = -1;
  std::vector<int64_t> shape;
  /// "value": equal to the constant value within tolerance; "zeros".
  std::string check;
};

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

struct KernelDesc {
  std::string op;
  /// Value ids in the op's operand order; -1 for an absent optional operand.
  std::vector<int32_t> operands;
  std::vector<int32_t> results;
  std::map<std::string, AttrValue> attrs;
};

struct EntryDesc {
  std::string name;
  std::vector<KernelDesc> kernels;
  /// Model inputs by name ("x", "t", "y", "captions", "keep").
  std::vector<std::pair<std::string, int32_t>> inputs;
  std::vector<int32_t> outputs;
};

struct Plan {
  /// 2: element-wise ops as kern.pointwise programs, CUDA source as device code.
  /// 3: an attention backward may return its gradients' row sums after them
  /// ("column_sums"), so a backward kernel's results are no longer one per
  /// forward slot.
  /// 4: kern.norm has eight operand slots (the residual form's residual and
  /// gate) and, in that form, a second result.
  static constexpr uint32_t kFormatVersion = 4;
  /// "cpu" or "cuda".
  std::string target;
  /// The model description (dit.model) as JSON text.
  std::string modelJson;
  uint64_t weightsBytes = 0, constantsBytes = 0, arenaBytes = 0;
  std::vector<ValueDesc> values;
  std::vector<ParamDesc> params;
  std::vector<StateDesc> state;
  std::vector<EntryDesc> entries;
  /// CUDA artifacts: the CUDA C++ source of the generated kernels (each
  /// kern.pointwise kernel names its function in attribute "kernel"), which
  /// the CUDA backend compiles through NVRTC. Empty for CPU artifacts.
  std::vector<uint8_t> deviceCode;

  const EntryDesc *entry(const std::string &name) const;
  uint64_t regionBytes(Region r) const;
};

/// Writes `plan` to `path` crash-safely (temporary file, then rename).
/// Returns false with `error` set on failure; never throws, so compiler code
/// built without exceptions can call it.
bool writeArtifact(const Plan &plan, const std::string &path, std::string &error) noexcept;

/// Reads and validates an artifact. Throws diffrt::Error naming the file,
/// the field and the numbers when anything is wrong: truncation, a foreign
/// or edited file, another format version, or a field out of range.
Plan readArtifact(const std::string &path);

/// The same checks on bytes in memory (`what` names them in errors).
Plan parseArtifact(const std::vector<uint8_t> &bytes, const std::string &what);

/// Serialises without writing (used by writeArtifact and by tests that
/// build artifacts with deliberately bad fields).
std::vector<uint8_t> serializeArtifact(const Plan &plan);

} // namespace diffrt

#endif // DIFFRT_PLAN_H
