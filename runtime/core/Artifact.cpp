//===- Artifact.cpp - the .dfx artifact format ----------------------------===//
//
// Layout: a 64-byte header (magic "DIFFCDFX", format version, sizes, FNV-1a
// checksum of everything after the header), the plan as JSON, and a blob of
// device code. Reading validates the container first (size, magic, version,
// checksum), then every field of the plan, so that a truncated, edited or
// foreign file is reported by name and never crashes the runtime.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Error.h"
#include "diffrt/KernelSignatures.h"
#include "diffrt/Plan.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <unistd.h>

namespace diffrt {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'D', 'I', 'F', 'F', 'C', 'D', 'F', 'X'};
constexpr size_t kHeaderBytes = 64;

uint64_t fnv1a(const uint8_t *data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void putU32(std::vector<uint8_t> &out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void putU64(std::vector<uint8_t> &out, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t getU32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t getU64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

const char *dtypeKey(DType t) {
  switch (t) {
  case DType::F32: return "f32";
  case DType::F16: return "f16";
  case DType::BF16: return "bf16";
  case DType::I32: return "i32";
  case DType::I64: return "i64";
  case DType::F64: return "f64";
  case DType::U8: return "u8";
  }
  return "?";
}

json attrToJson(const AttrValue &a) {
  if (auto *i = std::get_if<int64_t>(&a))
    return *i;
  if (auto *d = std::get_if<double>(&a))
    return *d;
  if (auto *s = std::get_if<std::string>(&a))
    return *s;
  return std::get<std::vector<int64_t>>(a);
}

json kernelToJson(const KernelDesc &k) {
  json attrs = json::object();
  for (auto &[name, value] : k.attrs)
    attrs[name] = attrToJson(value);
  return {{"op", k.op}, {"operands", k.operands}, {"results", k.results}, {"attrs", attrs}};
}

/// Reads JSON fields with errors that say where they are.
class Reader {
public:
  explicit Reader(std::string what) : what(std::move(what)) {}
  std::string what;

  const json &field(const json &obj, const char *name, const std::string &where) const {
    if (!obj.is_object() || !obj.contains(name))
      fail(what, ": ", where, ": missing field '", name, "'");
    return obj.at(name);
  }
  int64_t integer(const json &obj, const char *name, const std::string &where) const {
    const json &v = field(obj, name, where);
    if (!v.is_number_integer())
      fail(what, ": ", where, ": field '", name, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  std::string string(const json &obj, const char *name, const std::string &where) const {
    const json &v = field(obj, name, where);
    if (!v.is_string())
      fail(what, ": ", where, ": field '", name, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
  const json &array(const json &obj, const char *name, const std::string &where) const {
    const json &v = field(obj, name, where);
    if (!v.is_array())
      fail(what, ": ", where, ": field '", name, "' must be an array");
    return v;
  }
  std::vector<int64_t> ints(const json &obj, const char *name, const std::string &where) const {
    std::vector<int64_t> out;
    for (const json &e : array(obj, name, where)) {
      if (!e.is_number_integer())
        fail(what, ": ", where, ": field '", name, "' must hold integers, got ", e.dump());
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
};

DType parseDType(const Reader &r, const std::string &text, const std::string &where) {
  static const std::map<std::string, DType> names = {
      {"f32", DType::F32}, {"f16", DType::F16}, {"bf16", DType::BF16}, {"i32", DType::I32},
      {"i64", DType::I64}, {"f64", DType::F64}, {"u8", DType::U8}};
  auto it = names.find(text);
  if (it == names.end())
    fail(r.what, ": ", where, ": unknown dtype '", text, "'");
  return it->second;
}

Region parseRegion(const Reader &r, const std::string &text, const std::string &where) {
  if (text == "weights")
    return Region::Weights;
  if (text == "constants")
    return Region::Constants;
  if (text == "arena")
    return Region::Arena;
  fail(r.what, ": ", where, ": unknown region '", text, "' (weights, constants, arena)");
}

} // namespace

const char *regionName(Region r) {
  switch (r) {
  case Region::Weights: return "weights";
  case Region::Constants: return "constants";
  case Region::Arena: return "arena";
  }
  return "?";
}

int64_t ValueDesc::rows() const {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i)
    r *= shape[i];
  return r;
}

uint64_t ValueDesc::extentBytes() const {
  if (numel() == 0)
    return 0;
  return static_cast<uint64_t>((rows() - 1) * ld + cols()) * dtypeSize(dtype);
}

const EntryDesc *Plan::entry(const std::string &name) const {
  for (const EntryDesc &e : entries)
    if (e.name == name)
      return &e;
  return nullptr;
}

uint64_t Plan::regionBytes(Region r) const {
  switch (r) {
  case Region::Weights: return weightsBytes;
  case Region::Constants: return constantsBytes;
  case Region::Arena: return arenaBytes;
  }
  return 0;
}

std::vector<uint8_t> serializeArtifact(const Plan &plan) {
  json values = json::array();
  for (const ValueDesc &v : plan.values)
    values.push_back({{"dtype", dtypeKey(v.dtype)},
                      {"shape", v.shape},
                      {"region", regionName(v.region)},
                      {"offset", v.offset},
                      {"ld", v.ld}});
  json params = json::array();
  for (const ParamDesc &p : plan.params)
    params.push_back({{"value", p.value}, {"name", p.name}});
  json state = json::array();
  for (const StateDesc &s : plan.state)
    state.push_back({{"name", s.name}, {"value", s.value}, {"shape", s.shape}, {"check", s.check}});
  json entries = json::array();
  for (const EntryDesc &e : plan.entries) {
    json kernels = json::array();
    for (const KernelDesc &k : e.kernels)
      kernels.push_back(kernelToJson(k));
    json inputs = json::array();
    for (auto &[name, id] : e.inputs)
      inputs.push_back({{"name", name}, {"value", id}});
    entries.push_back({{"name", e.name}, {"kernels", kernels}, {"inputs", inputs}, {"outputs", e.outputs}});
  }
  json model = plan.modelJson.empty() ? json::object() : json::parse(plan.modelJson);
  json doc = {{"target", plan.target},
              {"model", model},
              {"regions",
               {{"weights", plan.weightsBytes},
                {"constants", plan.constantsBytes},
                {"arena", plan.arenaBytes}}},
              {"values", values},
              {"params", params},
              {"state", state},
              {"entries", entries}};
  std::string text = doc.dump();

  std::vector<uint8_t> out(kHeaderBytes + text.size() + plan.deviceCode.size());
  std::memcpy(out.data(), kMagic, 8);
  putU32(out, 8, Plan::kFormatVersion);
  putU32(out, 12, kHeaderBytes);
  putU64(out, 16, out.size());
  putU64(out, 24, kHeaderBytes);
  putU64(out, 32, text.size());
  putU64(out, 40, kHeaderBytes + text.size());
  putU64(out, 48, plan.deviceCode.size());
  std::memcpy(out.data() + kHeaderBytes, text.data(), text.size());
  if (!plan.deviceCode.empty())
    std::memcpy(out.data() + kHeaderBytes + text.size(), plan.deviceCode.data(),
                plan.deviceCode.size());
  putU64(out, 56, fnv1a(out.data() + kHeaderBytes, out.size() - kHeaderBytes));
  return out;
}

bool writeArtifact(const Plan &plan, const std::string &path, std::string &error) noexcept {
  try {
    std::vector<uint8_t> bytes = serializeArtifact(plan);
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    FILE *f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
      error = "cannot create " + tmp + ": " + std::strerror(errno);
      return false;
    }
    bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    ok = std::fflush(f) == 0 && ok;
    ok = ::fsync(::fileno(f)) == 0 && ok;
    ok = std::fclose(f) == 0 && ok;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
      error = "cannot write " + path + ": " + std::strerror(errno);
      std::remove(tmp.c_str());
      return false;
    }
    return true;
  } catch (const std::exception &e) {
    error = std::string("cannot serialise the artifact: ") + e.what();
    return false;
  }
}

Plan parseArtifact(const std::vector<uint8_t> &bytes, const std::string &what) {
  if (bytes.size() < kHeaderBytes)
    fail(what, ": truncated: ", bytes.size(), " bytes, but the header alone needs ", kHeaderBytes);
  if (std::memcmp(bytes.data(), kMagic, 8) != 0)
    fail(what, ": not a diffc artifact (magic bytes differ from \"DIFFCDFX\")");
  uint32_t version = getU32(bytes.data() + 8);
  if (version != Plan::kFormatVersion)
    fail(what, ": artifact format version ", version, ", but this runtime reads version ",
         Plan::kFormatVersion, "; recompile the model with this diffc");
  uint32_t headerBytes = getU32(bytes.data() + 12);
  uint64_t fileBytes = getU64(bytes.data() + 16);
  if (headerBytes != kHeaderBytes)
    fail(what, ": header size field is ", headerBytes, ", expected ", kHeaderBytes);
  if (fileBytes != bytes.size())
    fail(what, ": the header records ", fileBytes, " bytes but the file has ", bytes.size(),
         fileBytes > bytes.size() ? " (truncated)" : " (trailing data)");
  uint64_t planOffset = getU64(bytes.data() + 24), planBytes = getU64(bytes.data() + 32);
  uint64_t blobOffset = getU64(bytes.data() + 40), blobBytes = getU64(bytes.data() + 48);
  if (planOffset != kHeaderBytes || planBytes > fileBytes - planOffset ||
      blobOffset != planOffset + planBytes || blobBytes != fileBytes - blobOffset)
    fail(what, ": section table is inconsistent: plan [", planOffset, ", +", planBytes,
         "), device code [", blobOffset, ", +", blobBytes, ") in a file of ", fileBytes, " bytes");
  uint64_t stored = getU64(bytes.data() + 56);
  uint64_t computed = fnv1a(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes);
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "stored 0x%016llx, computed 0x%016llx",
                  static_cast<unsigned long long>(stored), static_cast<unsigned long long>(computed));
    fail(what, ": checksum mismatch, the file was edited or corrupted (", buf, ")");
  }

  json doc;
  try {
    doc = json::parse(bytes.begin() + planOffset, bytes.begin() + planOffset + planBytes);
  } catch (const std::exception &e) {
    fail(what, ": the plan is not valid JSON: ", e.what());
  }
  Reader r(what);
  Plan plan;
  plan.target = r.string(doc, "target", "plan");
  if (plan.target != "cpu" && plan.target != "cuda")
    fail(what, ": plan: target '", plan.target, "' is neither cpu nor cuda");
  plan.modelJson = r.field(doc, "model", "plan").dump();
  const json &regions = r.field(doc, "regions", "plan");
  auto regionSize = [&](const char *name) {
    int64_t v = r.integer(regions, name, "plan.regions");
    if (v < 0)
      fail(what, ": plan.regions: ", name, " is negative (", v, ")");
    return static_cast<uint64_t>(v);
  };
  plan.weightsBytes = regionSize("weights");
  plan.constantsBytes = regionSize("constants");
  plan.arenaBytes = regionSize("arena");

  const json &values = r.array(doc, "values", "plan");
  for (size_t i = 0; i < values.size(); ++i) {
    std::string where = "value #" + std::to_string(i);
    ValueDesc v;
    v.dtype = parseDType(r, r.string(values[i], "dtype", where), where);
    v.shape = r.ints(values[i], "shape", where);
    if (v.shape.size() > 6)
      fail(what, ": ", where, ": rank ", v.shape.size(), " exceeds the supported 6");
    for (int64_t d : v.shape)
      if (d < 0 || d > (int64_t(1) << 40))
        fail(what, ": ", where, ": dimension ", d, " is out of range");
    v.region = parseRegion(r, r.string(values[i], "region", where), where);
    int64_t offset = r.integer(values[i], "offset", where);
    v.ld = r.integer(values[i], "ld", where);
    if (offset < 0)
      fail(what, ": ", where, ": negative offset ", offset);
    v.offset = static_cast<uint64_t>(offset);
    if (v.ld < v.cols())
      fail(what, ": ", where, ": row stride ", v.ld, " is less than the row length ", v.cols());
    uint64_t region = plan.regionBytes(v.region);
    if (v.offset > region || v.extentBytes() > region - v.offset)
      fail(what, ": ", where, ": offset ", v.offset, " + ", v.extentBytes(), " bytes exceeds the ",
           regionName(v.region), " region of ", region, " bytes");
    if (v.offset % dtypeSize(v.dtype))
      fail(what, ": ", where, ": offset ", v.offset, " is not aligned to its ",
           dtypeSize(v.dtype), "-byte elements");
    plan.values.push_back(std::move(v));
  }
  auto checkId = [&](int64_t id, const std::string &where, bool allowAbsent) {
    if ((allowAbsent && id == -1) || (id >= 0 && id < static_cast<int64_t>(plan.values.size())))
      return static_cast<int32_t>(id);
    fail(what, ": ", where, ": value id ", id, " is out of range (the plan has ",
         plan.values.size(), " values)");
  };

  std::set<std::string> paramNames;
  const json &params = r.array(doc, "params", "plan");
  for (size_t i = 0; i < params.size(); ++i) {
    std::string where = "param #" + std::to_string(i);
    ParamDesc p;
    p.value = checkId(r.integer(params[i], "value", where), where, false);
    p.name = r.string(params[i], "name", where);
    if (p.name.empty() || !paramNames.insert(p.name).second)
      fail(what, ": ", where, ": name '", p.name, "' is empty or repeated");
    if (plan.values[p.value].region != Region::Weights)
      fail(what, ": ", where, " ('", p.name, "'): its value is in the ",
           regionName(plan.values[p.value].region), " region, not weights");
    if (!plan.values[p.value].contiguous())
      fail(what, ": ", where, " ('", p.name, "'): parameters must be contiguous");
    plan.params.push_back(std::move(p));
  }
  const json &state = r.array(doc, "state", "plan");
  for (size_t i = 0; i < state.size(); ++i) {
    std::string where = "state #" + std::to_string(i);
    StateDesc s;
    s.name = r.string(state[i], "name", where);
    s.value = checkId(r.integer(state[i], "value", where), where, true);
    s.shape = r.ints(state[i], "shape", where);
    s.check = r.string(state[i], "check", where);
    if (s.check != "value" && s.check != "zeros")
      fail(what, ": ", where, ": check '", s.check, "' is neither 'value' nor 'zeros'");
    if (s.check == "value" && s.value < 0)
      fail(what, ": ", where, ": a 'value' check needs a value id");
    if (paramNames.count(s.name))
      fail(what, ": ", where, ": '", s.name, "' is also a parameter");
    plan.state.push_back(std::move(s));
  }

  std::set<std::string> entryNames;
  const json &entries = r.array(doc, "entries", "plan");
  for (size_t i = 0; i < entries.size(); ++i) {
    std::string where = "entry #" + std::to_string(i);
    EntryDesc e;
    e.name = r.string(entries[i], "name", where);
    if (!entryNames.insert(e.name).second)
      fail(what, ": ", where, ": entry name '", e.name, "' is repeated");
    where = "entry '" + e.name + "'";
    for (const json &in : r.array(entries[i], "inputs", where)) {
      std::string name = r.string(in, "name", where + " input");
      e.inputs.emplace_back(name, checkId(r.integer(in, "value", where + " input '" + name + "'"),
                                          where + " input '" + name + "'", false));
    }
    for (int64_t id : r.ints(entries[i], "outputs", where))
      e.outputs.push_back(checkId(id, where + " output", false));
    const json &kernels = r.array(entries[i], "kernels", where);
    for (size_t k = 0; k < kernels.size(); ++k) {
      std::string kw = where + " kernel #" + std::to_string(k);
      KernelDesc kd;
      kd.op = r.string(kernels[k], "op", kw);
      kw += " (" + kd.op + ")";
      for (int64_t id : r.ints(kernels[k], "operands", kw))
        kd.operands.push_back(checkId(id, kw + " operand", true));
      // A backward kernel has one result per forward operand, -1 where no
      // gradient is wanted (then, with "column_sums", one per operand for
      // its gradient's row sums).
      bool backward = kd.op.rfind("vjp:", 0) == 0;
      for (int64_t id : r.ints(kernels[k], "results", kw))
        kd.results.push_back(checkId(id, kw + " result", backward));
      const json &attrs = r.field(kernels[k], "attrs", kw);
      if (!attrs.is_object())
        fail(what, ": ", kw, ": attrs must be an object");
      for (auto it = attrs.begin(); it != attrs.end(); ++it) {
        const json &v = it.value();
        if (v.is_number_integer())
          kd.attrs[it.key()] = v.get<int64_t>();
        else if (v.is_number())
          kd.attrs[it.key()] = v.get<double>();
        else if (v.is_string())
          kd.attrs[it.key()] = v.get<std::string>();
        else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json &x) { return x.is_number_integer(); }))
          kd.attrs[it.key()] = v.get<std::vector<int64_t>>();
        else
          fail(what, ": ", kw, ": attribute '", it.key(), "' has unsupported value ", v.dump());
      }
      validateKernel(plan, kd, what + ": " + kw);
      e.kernels.push_back(std::move(kd));
    }
    plan.entries.push_back(std::move(e));
  }
  if (!plan.entry("forward") && !plan.entry("train_step"))
    fail(what, ": the plan has neither a 'forward' nor a 'train_step' entry");
  plan.deviceCode.assign(bytes.begin() + blobOffset, bytes.end());
  // Generated kernels: a CUDA artifact's device code defines each one.
  std::string source(plan.deviceCode.begin(), plan.deviceCode.end());
  if (plan.target == "cpu" && !source.empty())
    fail(what, ": a CPU artifact carries ", source.size(), " bytes of device code");
  for (const EntryDesc &e : plan.entries)
    for (size_t i = 0; i < e.kernels.size(); ++i)
      if (plan.target == "cuda" && e.kernels[i].op == "kern.pointwise") {
        const std::string &name = attrString(e.kernels[i], "kernel");
        if (source.find("void __launch_bounds__(256) " + name + "(") == std::string::npos)
          fail(what, ": ", e.name, " kernel #", i, " calls generated kernel '", name,
               "', which the artifact's device code (", source.size(), " bytes) does not define");
      }
  return plan;
}

Plan readArtifact(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, ": cannot open the artifact: ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    fail(path, ": read error");
  return parseArtifact(bytes, path);
}

} // namespace diffrt
