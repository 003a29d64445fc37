//===- KernelSignatures.cpp - validation of every kernel of a plan --------===//
//
// One checker per op. Each names the operand and both numbers when a
// relation does not hold ("kern.gemm: weight is 1152x384 but the input rows
// have 768 features").
//
//===----------------------------------------------------------------------===//

#include "diffrt/KernelSignatures.h"

#include "diffrt/Error.h"
#include "diffrt/Pointwise.h"

#include <functional>
#include <map>
#include <sstream>

namespace diffrt {

namespace {

bool isFloat(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

/// Checking context for one kernel.
struct Check {
  const Plan &plan;
  const KernelDesc &k;
  const std::string &where;
  bool lossPart = false;

  template <typename... Parts>
  [[noreturn]] void error(const Parts &...parts) const {
    fail(where, ": ", parts...);
  }

  void counts(size_t operands, size_t results) const {
    // A backward kernel checks its forward part without the forward result
    // of a loss (its gradient needs none).
    if (k.results.empty() && results == 1 && k.operands.size() == operands && lossPart)
      return;
    if (k.operands.size() != operands || k.results.size() != results)
      error("expects ", operands, " operands and ", results, " results, got ", k.operands.size(),
            " and ", k.results.size());
  }
  bool has(size_t i) const { return k.operands[i] >= 0; }
  const ValueDesc &in(size_t i, const char *name) const {
    if (!has(i))
      error("operand #", i, " (", name, ") is required");
    return plan.values[k.operands[i]];
  }
  const ValueDesc &out(size_t i = 0) const { return plan.values[k.results[i]]; }
  bool hasOut() const { return !k.results.empty() && k.results[0] >= 0; }
  void rank(const ValueDesc &v, size_t r, const char *name) const {
    if (v.shape.size() != r)
      error(name, " must have rank ", r, ", got shape ", shapeText(v.shape));
  }
  void shape(const ValueDesc &v, const std::vector<int64_t> &s, const char *name) const {
    if (v.shape != s)
      error(name, " must be ", shapeText(s), ", got ", shapeText(v.shape));
  }
  void contiguous(const ValueDesc &v, const char *name) const {
    if (!v.contiguous())
      error(name, " must be contiguous (row stride ", v.ld, " for rows of ", v.cols(), ")");
  }
  void dtype(const ValueDesc &v, DType t, const char *name) const {
    if (v.dtype != t)
      error(name, " must be ", dtypeName(t), ", got ", dtypeName(v.dtype));
  }
  /// All present float operands and the results share one float dtype.
  void sameFloat() const {
    if (!hasOut())
      return;
    DType first = out().dtype;
    if (!isFloat(first))
      error("result dtype ", dtypeName(first), " is not a float type");
    for (int32_t id : k.operands)
      if (id >= 0 && isFloat(plan.values[id].dtype) && plan.values[id].dtype != first)
        error("mixes ", dtypeName(plan.values[id].dtype), " and ", dtypeName(first));
  }
  /// The tensor operands 0..count-1 of a loss share one float type (the
  /// model's); the per-sample loss itself is f32.
  void lossTypes(size_t count) const {
    DType first = in(0, "prediction").dtype;
    if (!isFloat(first))
      error("prediction dtype ", dtypeName(first), " is not a float type");
    for (size_t i = 1; i < count; ++i)
      dtype(in(i, "loss operand"), first, "loss operands (the prediction's type)");
    if (hasOut())
      dtype(out(), DType::F32, "the per-sample loss");
  }
  void resultsContiguous() const {
    for (size_t i = 0; i < k.results.size(); ++i)
      if (k.results[i] >= 0 && !out(i).contiguous())
        error("result #", i, " must be contiguous");
  }
  const AttrValue &attr(const char *name) const {
    auto it = k.attrs.find(name);
    if (it == k.attrs.end())
      error("missing attribute '", name, "'");
    return it->second;
  }
  int64_t integer(const char *name) const {
    if (auto *v = std::get_if<int64_t>(&attr(name)))
      return *v;
    error("attribute '", name, "' must be an integer");
  }
  double real(const char *name) const {
    const AttrValue &a = attr(name);
    if (auto *v = std::get_if<double>(&a))
      return *v;
    if (auto *v = std::get_if<int64_t>(&a))
      return static_cast<double>(*v);
    error("attribute '", name, "' must be a number");
  }
  std::string string(const char *name, std::initializer_list<const char *> allowed) const {
    auto *v = std::get_if<std::string>(&attr(name));
    if (!v)
      error("attribute '", name, "' must be a string");
    for (const char *a : allowed)
      if (*v == a)
        return *v;
    std::string list;
    for (const char *a : allowed)
      list += std::string(list.empty() ? "" : ", ") + a;
    error("attribute '", name, "' is '", *v, "', expected one of ", list);
  }
  std::vector<int64_t> ints(const char *name, size_t n) const {
    auto *v = std::get_if<std::vector<int64_t>>(&attr(name));
    if (!v || v->size() != n)
      error("attribute '", name, "' must hold ", n, " integers");
    for (int64_t x : *v)
      if (x <= 0)
        error("attribute '", name, "' must be positive, got ", x);
    return *v;
  }
  /// The residual epilogue operands at `r` and `r + 1`.
  void epilogue(size_t r) const {
    if (has(r) != has(r + 1))
      error("residual and gate must come together");
    if (!has(r))
      return;
    const ValueDesc &res = in(r, "residual");
    shape(res, out().shape, "residual");
    rank(res, 3, "residual");
    shape(in(r + 1, "gate"), {res.shape[0], res.shape[2]}, "gate");
  }
};

const char *kScanOrders[] = {"row_major", "row_major_reversed", "col_major", "col_major_reversed"};

void checkScan(const Check &c, const std::vector<int64_t> &grid, int64_t tokens) {
  std::string from = c.string("from", {kScanOrders[0], kScanOrders[1], kScanOrders[2], kScanOrders[3]});
  std::string to = c.string("to", {kScanOrders[0], kScanOrders[1], kScanOrders[2], kScanOrders[3]});
  if (grid[0] * grid[1] != tokens)
    c.error("grid ", grid[0], "x", grid[1], " does not cover ", tokens, " tokens");
  bool col = from.rfind("col", 0) == 0 || to.rfind("col", 0) == 0;
  if (col && grid[0] != grid[1])
    c.error("column-major orders need a square grid, got ", grid[0], "x", grid[1]);
}

/// dit.add and dit.mul: rhs broadcasts over the leading dimensions of lhs.
void checkSuffixBroadcast(const Check &c) {
  c.counts(2, 1);
  const ValueDesc &a = c.in(0, "lhs"), &b = c.in(1, "rhs");
  c.contiguous(a, "lhs");
  c.contiguous(b, "rhs");
  if (b.shape.size() > a.shape.size() ||
      !std::equal(b.shape.rbegin(), b.shape.rend(), a.shape.rbegin()))
    c.error("rhs ", shapeText(b.shape), " is not a suffix of lhs ", shapeText(a.shape));
  c.shape(c.out(), a.shape, "result");
  c.sameFloat();
}

/// kern.pointwise: every input is a single element or broadcasts over the
/// result's leading dimensions, and the program reads only inputs the
/// kernel has.
void checkPointwise(const Check &c) {
  if (c.k.operands.empty() || c.k.results.size() != 1)
    c.error("expects at least one operand and one result, got ", c.k.operands.size(), " and ",
            c.k.results.size());
  const ValueDesc &out = c.out();
  if (!isFloat(out.dtype))
    c.error("result dtype ", dtypeName(out.dtype), " is not a float type");
  for (size_t i = 0; i < c.k.operands.size(); ++i) {
    const ValueDesc &x = c.in(i, "input");
    if (!isFloat(x.dtype))
      c.error("input #", i, " dtype ", dtypeName(x.dtype), " is not a float type");
    bool suffix = x.shape.size() <= out.shape.size() &&
                  std::equal(x.shape.rbegin(), x.shape.rend(), out.shape.rbegin());
    if (x.numel() != 1 && !suffix)
      c.error("input #", i, " ", shapeText(x.shape), " does not broadcast to the result ",
              shapeText(out.shape));
  }
  auto *words = std::get_if<std::vector<int64_t>>(&c.attr("program"));
  if (!words)
    c.error("attribute 'program' must be a list of integers");
  decodePointwise(*words, static_cast<int32_t>(c.k.operands.size()), c.where);
  if (!std::get_if<std::string>(&c.attr("kernel")))
    c.error("attribute 'kernel' must be a string");
}

/// dit.attention, and kern.attention (`statistics`), which also writes its
/// log-sum-exp.
void checkAttention(const Check &c, bool statistics) {
  c.counts(3, statistics ? 2 : 1);
  const ValueDesc &q = c.in(0, "query"), &k = c.in(1, "key"), &v = c.in(2, "value");
  for (const ValueDesc *t : {&q, &k, &v})
    c.rank(*t, 3, "attention operand");
  int64_t h = c.integer("num_heads");
  if (h <= 0 || q.shape[2] % h || k.shape[2] % h || v.shape[2] % h || q.shape[2] != k.shape[2])
    c.error("num_heads ", h, " does not split widths ", q.shape[2], ", ", k.shape[2], ", ", v.shape[2]);
  if (k.shape[0] != q.shape[0] || v.shape[0] != q.shape[0] || k.shape[1] != v.shape[1])
    c.error("query ", shapeText(q.shape), ", key ", shapeText(k.shape), ", value ",
            shapeText(v.shape), " disagree on batch or length");
  c.real("scale");
  c.shape(c.out(), {q.shape[0], q.shape[1], v.shape[2]}, "result");
  c.sameFloat();
  if (statistics) {
    // The softmax log-sum-exp, f32 per (sample, head, query).
    c.shape(c.out(1), {q.shape[0], h, q.shape[1]}, "logsumexp");
    c.dtype(c.out(1), DType::F32, "logsumexp");
    c.contiguous(c.out(1), "logsumexp");
  }
}

using Checker = std::function<void(const Check &)>;

const std::map<std::string, Checker> &checkers() {
  static const std::map<std::string, Checker> table = {
      {"kern.gemm",
       [](const Check &c) {
         const bool keepsZ = c.k.results.size() == 2;
         c.counts(5, keepsZ ? 2 : 1);
         const ValueDesc &x = c.in(0, "input"), &w = c.in(1, "weight");
         c.rank(w, 2, "weight");
         c.contiguous(w, "weight");
         if (w.shape[1] != x.cols())
           c.error("weight is ", shapeText(w.shape), " but the input rows have ", x.cols(), " features");
         std::vector<int64_t> s = x.shape;
         s.back() = w.shape[0];
         c.shape(c.out(), s, "result");
         if (c.has(2))
           c.shape(c.in(2, "bias"), {w.shape[0]}, "bias");
         c.epilogue(3);
         std::string act = c.string("act", {"none", "gelu", "gelu_tanh", "silu"});
         c.sameFloat();
         if (keepsZ && c.k.results[1] >= 0) {
           const ValueDesc &z = c.out(1);
           c.shape(z, c.out().shape, "preactivation");
           c.dtype(z, c.out().dtype, "preactivation");
           if (act == "none" && !c.has(3))
             c.error("a preactivation without an activation or a gated residual is the result itself");
         }
       }},
      {"kern.swiglu",
       [](const Check &c) {
         c.counts(6, 1);
         const ValueDesc &x = c.in(0, "input"), &g = c.in(1, "gate_weight"), &d = c.in(3, "down_weight");
         c.rank(g, 2, "gate_weight");
         c.rank(d, 2, "down_weight");
         int64_t hidden = c.has(2) ? g.shape[0] : g.shape[0] / 2;
         if (g.shape[1] != x.cols() || (!c.has(2) && g.shape[0] % 2))
           c.error("gate weight ", shapeText(g.shape), " does not fit input width ", x.cols());
         if (c.has(2))
           c.shape(c.in(2, "up_weight"), g.shape, "up_weight");
         if (d.shape[1] != hidden)
           c.error("down weight ", shapeText(d.shape), " does not take ", hidden, " hidden features");
         std::vector<int64_t> s = x.shape;
         s.back() = d.shape[0];
         c.shape(c.out(), s, "result");
         c.epilogue(4);
         c.sameFloat();
       }},
      {"kern.norm",
       [](const Check &c) {
         // Operands 6 and 7: the residual form's residual and gate, whose
         // sum is result 1 (kern-fuse-residual-norm).
         const bool residual = c.k.operands.size() > 6 && c.k.operands[6] >= 0;
         c.counts(8, residual ? 2 : 1);
         const ValueDesc &x = c.in(0, "input");
         c.string("kind", {"layer", "rms"});
         int64_t group = c.integer("group_size");
         if (group <= 0 || x.cols() % group)
           c.error("group_size ", group, " does not divide the row length ", x.cols());
         if (!(c.real("epsilon") > 0))
           c.error("epsilon must be positive");
         for (size_t i : {1, 2})
           if (c.has(i))
             c.shape(c.in(i, "affine"), {group}, i == 1 ? "weight" : "bias");
         if (c.has(3) != c.has(4))
           c.error("shift and scale must come together");
         if (c.has(3)) {
           c.rank(x, 3, "modulated input");
           c.shape(c.in(3, "shift"), {x.shape[0], x.shape[2]}, "shift");
           c.shape(c.in(4, "scale"), {x.shape[0], x.shape[2]}, "scale");
         }
         if (c.has(5))
           c.shape(c.in(5, "silu_gate"), x.shape, "silu_gate");
         c.shape(c.out(), x.shape, "result");
         if (c.has(6) != c.has(7))
           c.error("residual and residual gate must come together");
         if (residual) {
           c.rank(x, 3, "input with a residual");
           c.shape(c.in(6, "residual"), x.shape, "residual");
           c.shape(c.in(7, "residual gate"), {x.shape[0], x.shape[2]}, "residual gate");
           c.shape(c.out(1), x.shape, "sum");
         }
         c.sameFloat();
       }},
      {"kern.moe",
       [](const Check &c) {
         const bool keepsActivations = c.k.results.size() == 2;
         c.counts(10, keepsActivations ? 2 : 1);
         const ValueDesc &x = c.in(0, "input"), &router = c.in(1, "router");
         c.rank(x, 3, "input");
         c.rank(router, 2, "router");
         int64_t e = router.shape[0], d = x.shape[2];
         if (router.shape[1] != d || e < 1)
           c.error("router ", shapeText(router.shape), " does not fit width ", d);
         std::string act = c.string("activation", {"swiglu", "gelu", "gelu_tanh"});
         std::string layout = c.string("weight_layout", {"out_in", "in_out"});
         std::string routing = c.string("routing", {"token_choice", "expert_choice"});
         bool swiglu = act == "swiglu";
         if (c.has(4) != swiglu)
           c.error(swiglu ? "swiglu experts need three weights" : "gelu experts take two weights");
         const ValueDesc &w0 = c.in(2, "expert weight 0");
         c.rank(w0, 3, "expert weight 0");
         int64_t f = layout == "out_in" ? w0.shape[1] : w0.shape[2];
         auto m = [&](int64_t o, int64_t i) {
           return layout == "out_in" ? std::vector<int64_t>{e, o, i} : std::vector<int64_t>{e, i, o};
         };
         c.shape(w0, m(f, d), "expert weight 0");
         if (swiglu) {
           c.shape(c.in(3, "expert weight 1"), m(f, d), "expert weight 1");
           c.shape(c.in(4, "expert weight 2"), m(d, f), "expert weight 2");
         } else {
           c.shape(c.in(3, "expert weight 1"), m(d, f), "expert weight 1");
         }
         int shared = c.has(5) + c.has(6) + c.has(7);
         if (shared != 0 && shared != 3)
           c.error("shared expert weights must be all three or none");
         if (shared) {
           const ValueDesc &sg = c.in(5, "shared gate");
           c.rank(sg, 2, "shared gate");
           c.shape(sg, {sg.shape[0], d}, "shared gate");
           c.shape(c.in(6, "shared up"), sg.shape, "shared up");
           c.shape(c.in(7, "shared down"), {d, sg.shape[0]}, "shared down");
         }
         if (routing == "token_choice") {
           int64_t k = c.integer("top_k");
           if (k < 1 || k > e)
             c.error("top_k ", k, " is outside [1, ", e, "]");
           c.integer("normalize");
         } else {
           double cap = c.real("capacity");
           int64_t per = static_cast<int64_t>(cap * x.shape[1] / e);
           if (per < 1 || per > x.shape[1])
             c.error("capacity ", cap, " gives ", per, " tokens per expert for ", x.shape[1], " tokens");
         }
         c.shape(c.out(), x.shape, "result");
         c.epilogue(8);
         c.sameFloat();
         if (keepsActivations && c.k.results[1] >= 0) {
           // kern.moe C5: G, U, H, Y per slot row, then the shared expert's.
           if (routing != "token_choice" || !swiglu)
             c.error("only token-choice routing with SwiGLU experts saves activations");
           if (c.plan.target != "cuda")
             c.error("saved expert activations are read by the CUDA backward only; compile for the CPU "
                     "without them");
           const int64_t tokens = x.shape[0] * x.shape[1];
           int64_t n = tokens * c.integer("top_k") * (3 * f + d);
           if (shared)
             n += tokens * (3 * c.in(5, "shared gate").shape[0] + d);
           c.shape(c.out(1), {n}, "activations");
           c.dtype(c.out(1), c.out().dtype, "activations");
         }
       }},
      {"kern.dwconv",
       [](const Check &c) {
         c.counts(3, 1);
         const ValueDesc &x = c.in(0, "input");
         c.rank(x, 3, "input");
         c.contiguous(x, "input");
         std::vector<int64_t> grid = c.ints("grid", 2);
         checkScan(c, grid, x.shape[1]);
         const ValueDesc &w = c.in(1, "weight");
         c.rank(w, 4, "weight");
         if (w.shape[0] != x.shape[2] || w.shape[1] != 1 || w.shape[2] != w.shape[3] || w.shape[2] % 2 == 0)
           c.error("weight ", shapeText(w.shape), " is not ", x.shape[2], "x1xkxk with odd k");
         c.shape(c.in(2, "bias"), {x.shape[2]}, "bias");
         c.shape(c.out(), x.shape, "result");
         c.sameFloat();
       }},
      {"kern.patch_embed",
       [](const Check &c) {
         c.counts(4, 1);
         const ValueDesc &x = c.in(0, "input"), &w = c.in(1, "weight");
         c.rank(x, 4, "input");
         c.rank(w, 4, "weight");
         c.contiguous(x, "input");
         int64_t p = w.shape[2];
         if (w.shape[3] != p || w.shape[1] != x.shape[1] || p <= 0 || x.shape[2] % p || x.shape[3] % p)
           c.error("weight ", shapeText(w.shape), " does not patch input ", shapeText(x.shape));
         int64_t t = (x.shape[2] / p) * (x.shape[3] / p);
         c.shape(c.out(), {x.shape[0], t, w.shape[0]}, "result");
         c.shape(c.in(2, "bias"), {w.shape[0]}, "bias");
         if (c.has(3))
           c.shape(c.in(3, "positions"), {t, w.shape[0]}, "positions");
         c.sameFloat();
       }},
      {"kern.cast",
       [](const Check &c) {
         c.counts(1, 1);
         const ValueDesc &x = c.in(0, "input");
         c.contiguous(x, "input");
         c.shape(c.out(), x.shape, "result");
         if (!isFloat(x.dtype) || !isFloat(c.out().dtype))
           c.error("casts between float types only");
       }},
      {"dit.attention", [](const Check &c) { checkAttention(c, false); }},
      {"kern.attention", [](const Check &c) { checkAttention(c, true); }},
      {"dit.gla",
       [](const Check &c) {
         c.counts(4, 1);
         const ValueDesc &q = c.in(0, "query"), &v = c.in(2, "value");
         c.rank(q, 3, "query");
         c.shape(c.in(1, "key"), q.shape, "key");
         c.shape(c.in(3, "gate_logits"), q.shape, "gate_logits");
         c.rank(v, 3, "value");
         int64_t h = c.integer("num_heads");
         if (h <= 0 || q.shape[2] % h || v.shape[2] % h || v.shape[0] != q.shape[0] || v.shape[1] != q.shape[1])
           c.error("num_heads ", h, " with query ", shapeText(q.shape), " and value ", shapeText(v.shape));
         c.real("scale");
         if (!(c.real("gate_normalizer") > 0) || c.integer("chunk_size") <= 0)
           c.error("gate_normalizer and chunk_size must be positive");
         c.shape(c.out(), v.shape, "result");
         c.sameFloat();
       }},
      {"dit.unpatchify",
       [](const Check &c) {
         c.counts(1, 1);
         const ValueDesc &x = c.in(0, "input");
         c.rank(x, 3, "input");
         c.contiguous(x, "input");
         std::vector<int64_t> grid = c.ints("grid", 2);
         int64_t p = c.integer("patch_size");
         if (p <= 0 || grid[0] * grid[1] != x.shape[1] || x.shape[2] % (p * p))
           c.error("grid ", grid[0], "x", grid[1], " and patch ", p, " do not fit ", shapeText(x.shape));
         c.shape(c.out(), {x.shape[0], x.shape[2] / (p * p), grid[0] * p, grid[1] * p}, "result");
         c.sameFloat();
       }},
      {"dit.sincos_pos_embed",
       [](const Check &c) {
         c.counts(0, 1);
         std::vector<int64_t> grid = c.ints("grid", 2);
         int64_t dim = c.integer("dim");
         if (dim <= 0 || dim % 4 || !(c.real("interp_scale") > 0))
           c.error("dim ", dim, " must be a positive multiple of 4 and interp_scale positive");
         c.shape(c.out(), {grid[0] * grid[1], dim}, "result");
         c.dtype(c.out(), DType::F32, "result");
       }},
      {"dit.timestep_embed",
       [](const Check &c) {
         c.counts(1, 1);
         const ValueDesc &t = c.in(0, "input");
         c.rank(t, 1, "input");
         c.dtype(t, DType::F32, "input");
         int64_t dim = c.integer("dim");
         if (dim < 2 || !(c.real("max_period") > 1))
           c.error("dim ", dim, " must be >= 2 and max_period > 1");
         c.shape(c.out(), {t.shape[0], dim}, "result");
         c.dtype(c.out(), DType::F32, "result");
       }},
      {"dit.label_embed",
       [](const Check &c) {
         c.counts(2, 1);
         const ValueDesc &labels = c.in(0, "labels"), &table = c.in(1, "table");
         c.rank(labels, 1, "labels");
         c.dtype(labels, DType::I32, "labels");
         c.rank(table, 2, "table");
         int64_t classes = c.integer("num_classes");
         if (classes < 1 || table.shape[0] != classes + 1)
           c.error("table has ", table.shape[0], " rows for ", classes, " classes (needs ", classes + 1, ")");
         c.shape(c.out(), {labels.shape[0], table.shape[1]}, "result");
         c.sameFloat();
       }},
      {"dit.token_mean",
       [](const Check &c) {
         c.counts(1, 1);
         const ValueDesc &x = c.in(0, "input");
         c.rank(x, 3, "input");
         if (x.shape[1] < 1)
           c.error("needs at least one token");
         c.shape(c.out(), {x.shape[0], x.shape[2]}, "result");
         c.sameFloat();
       }},
      {"dit.mask_tokens",
       [](const Check &c) {
         c.counts(2, 1);
         const ValueDesc &x = c.in(0, "input"), &keep = c.in(1, "keep");
         c.rank(x, 3, "input");
         c.rank(keep, 2, "keep");
         c.dtype(keep, DType::I32, "keep");
         if (keep.shape[0] != x.shape[0] || keep.shape[1] < 1 || keep.shape[1] > x.shape[1])
           c.error("keep ", shapeText(keep.shape), " does not select from ", shapeText(x.shape));
         c.shape(c.out(), {x.shape[0], keep.shape[1], x.shape[2]}, "result");
         c.sameFloat();
       }},
      {"dit.unmask_tokens",
       [](const Check &c) {
         c.counts(2, 1);
         const ValueDesc &x = c.in(0, "input"), &keep = c.in(1, "keep");
         c.rank(x, 3, "input");
         c.rank(keep, 2, "keep");
         c.dtype(keep, DType::I32, "keep");
         int64_t tokens = c.integer("num_tokens");
         if (keep.shape[0] != x.shape[0] || keep.shape[1] != x.shape[1] || tokens < x.shape[1])
           c.error("keep ", shapeText(keep.shape), " and num_tokens ", tokens, " do not fit ", shapeText(x.shape));
         c.shape(c.out(), {x.shape[0], tokens, x.shape[2]}, "result");
         c.sameFloat();
       }},
      {"dit.reorder_tokens",
       [](const Check &c) {
         c.counts(1, 1);
         const ValueDesc &x = c.in(0, "input");
         c.rank(x, 3, "input");
         checkScan(c, c.ints("grid", 2), x.shape[1]);
         c.shape(c.out(), x.shape, "result");
         c.sameFloat();
       }},
      {"kern.pointwise", checkPointwise},
      {"dit.add", checkSuffixBroadcast},
      {"dit.mul", checkSuffixBroadcast},
      {"dit.silu",
       [](const Check &c) {
         c.counts(1, 1);
         c.contiguous(c.in(0, "input"), "input");
         c.shape(c.out(), c.in(0, "input").shape, "result");
         c.sameFloat();
       }},
      {"dit.gelu",
       [](const Check &c) {
         c.counts(1, 1);
         c.contiguous(c.in(0, "input"), "input");
         c.shape(c.out(), c.in(0, "input").shape, "result");
         c.integer("approximate");
         c.sameFloat();
       }},
      {"dit.modulate",
       [](const Check &c) {
         c.counts(3, 1);
         const ValueDesc &x = c.in(0, "input");
         c.rank(x, 3, "input");
         c.shape(c.in(1, "shift"), {x.shape[0], x.shape[2]}, "shift");
         c.shape(c.in(2, "scale"), {x.shape[0], x.shape[2]}, "scale");
         c.shape(c.out(), x.shape, "result");
         c.sameFloat();
       }},
      {"dit.split",
       [](const Check &c) {
         const ValueDesc &x = c.in(0, "input");
         int64_t parts = c.integer("parts");
         if (c.k.operands.size() != 1 || parts < 1 || x.cols() % parts ||
             static_cast<int64_t>(c.k.results.size()) != parts)
           c.error("splits ", shapeText(x.shape), " into ", parts, " parts with ", c.k.results.size(),
                   " results");
         std::vector<int64_t> s = x.shape;
         s.back() /= parts;
         for (size_t i = 0; i < c.k.results.size(); ++i)
           c.shape(c.out(i), s, "part");
       }},
      {"dit.ddpm_loss",
       [](const Check &c) {
         c.counts(5, 1);
         const ValueDesc &p = c.in(0, "prediction"), &x0 = c.in(1, "x_start");
         c.rank(x0, 4, "x_start");
         c.shape(p, {x0.shape[0], 2 * x0.shape[1], x0.shape[2], x0.shape[3]}, "prediction");
         c.shape(c.in(2, "x_t"), x0.shape, "x_t");
         c.shape(c.in(3, "noise"), x0.shape, "noise");
         c.shape(c.in(4, "timesteps"), {x0.shape[0]}, "timesteps");
         c.dtype(c.in(4, "timesteps"), DType::I32, "timesteps");
         if (c.integer("num_timesteps") < 2)
           c.error("num_timesteps must be at least 2");
         c.lossTypes(4);
         if (c.hasOut())
           c.shape(c.out(), {x0.shape[0]}, "loss");
       }},
      {"dit.rf_loss",
       [](const Check &c) {
         c.counts(3, 1);
         const ValueDesc &p = c.in(0, "prediction"), &x0 = c.in(1, "x_start");
         c.rank(x0, 4, "x_start");
         c.rank(p, 4, "prediction");
         if (p.shape[0] != x0.shape[0] || p.shape[1] < x0.shape[1] || p.shape[2] != x0.shape[2] ||
             p.shape[3] != x0.shape[3])
           c.error("prediction ", shapeText(p.shape), " does not cover x_start ", shapeText(x0.shape));
         c.shape(c.in(2, "noise"), x0.shape, "noise");
         c.lossTypes(3);
         if (c.hasOut())
           c.shape(c.out(), {x0.shape[0]}, "loss");
       }},
      {"dit.edm_loss",
       [](const Check &c) {
         c.counts(5, 1);
         const ValueDesc &x0 = c.in(2, "x_start");
         c.rank(x0, 4, "x_start");
         c.shape(c.in(0, "raw"), x0.shape, "raw");
         c.shape(c.in(1, "x_noisy"), x0.shape, "x_noisy");
         c.shape(c.in(3, "sigma"), {x0.shape[0]}, "sigma");
         if (!(c.real("sigma_data") > 0))
           c.error("sigma_data must be positive");
         int64_t p = c.integer("patch_size");
         if (c.has(4)) {
           const ValueDesc &keep = c.in(4, "keep");
           c.dtype(keep, DType::I32, "keep");
           if (p <= 0 || x0.shape[2] % p || x0.shape[3] % p || keep.shape.size() != 2 ||
               keep.shape[0] != x0.shape[0] || keep.shape[1] > (x0.shape[2] / p) * (x0.shape[3] / p))
             c.error("keep ", shapeText(keep.shape), " does not select patches of ", shapeText(x0.shape));
         }
         c.lossTypes(3);
         c.dtype(c.in(3, "sigma"), DType::F32, "sigma");
         if (c.hasOut())
           c.shape(c.out(), {x0.shape[0]}, "loss");
       }},
      {"dit.gated_residual",
       [](const Check &c) {
         c.counts(3, 1);
         const ValueDesc &r = c.in(0, "residual");
         c.rank(r, 3, "residual");
         c.shape(c.in(1, "gate"), {r.shape[0], r.shape[2]}, "gate");
         c.shape(c.in(2, "update"), r.shape, "update");
         c.shape(c.out(), r.shape, "result");
         c.sameFloat();
       }},
  };
  return table;
}

const AttrValue &findAttr(const KernelDesc &k, const char *name) {
  auto it = k.attrs.find(name);
  if (it == k.attrs.end())
    fail("kernel ", k.op, ": missing attribute '", name, "'");
  return it->second;
}

} // namespace

static bool isLossOp(const std::string &op) {
  return op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss";
}

/// A backward kernel "vjp:OP": operands are OP's operand slots, then the
/// values OP saved for it (attribute "saved" counts them; they are OP's
/// results after the incoming gradients' ones), then the incoming
/// gradients. The forward part must be a valid OP whose results have the
/// incoming gradients' shapes; result i, when present, is the gradient of
/// forward operand i and has its type.
static void validateVjp(const Plan &plan, const KernelDesc &kernel, const std::string &where) {
  std::string op = kernel.op.substr(4);
  auto it = checkers().find(op);
  if (it == checkers().end())
    fail(where, ": no backward kernel for '", op, "'");
  // kern-fold-attention-bias-grad: the gradients' row sums after them.
  const bool sums = kernel.attrs.count("column_sums") > 0;
  if (sums) {
    const int64_t *flag = std::get_if<int64_t>(&kernel.attrs.at("column_sums"));
    if (op != "kern.attention" && op != "dit.attention")
      fail(where, ": only an attention backward sums its gradients (column_sums)");
    if (flag == nullptr || *flag != 1)
      fail(where, ": attribute 'column_sums' must be the integer 1");
    if (kernel.results.size() % 2 != 0)
      fail(where, ": column_sums needs a sum result per gradient slot, got ", kernel.results.size(), " results");
  }
  size_t slots = slotCount(kernel);
  int64_t saved = 0;
  if (auto a = kernel.attrs.find("saved"); a != kernel.attrs.end()) {
    const int64_t *n = std::get_if<int64_t>(&a->second);
    if (n == nullptr)
      fail(where, ": attribute 'saved' must be an integer");
    saved = *n;
  }
  if (saved < 0 || slots + static_cast<size_t>(saved) > kernel.operands.size())
    fail(where, ": ", slots, " gradient slots and ", saved, " saved values but ", kernel.operands.size(),
         " operands");
  KernelDesc forward;
  forward.op = op;
  forward.attrs = kernel.attrs;
  forward.attrs.erase("saved");
  forward.attrs.erase("input_grad_act");
  forward.attrs.erase("input_grad_addend");
  forward.attrs.erase("column_sums");
  // kern-fold-activation-grad: z of the input x = act(z) after the incoming
  // gradients, and the slot 0 gradient is dz.
  const bool folded = kernel.attrs.count("input_grad_act") > 0;
  if (folded) {
    const std::string *act = std::get_if<std::string>(&kernel.attrs.at("input_grad_act"));
    if (op != "kern.gemm")
      fail(where, ": only a kern.gemm backward folds an input activation");
    if (act == nullptr || (*act != "gelu" && *act != "gelu_tanh" && *act != "silu"))
      fail(where, ": attribute 'input_grad_act' must be gelu, gelu_tanh or silu");
    if (kernel.operands.size() < slots + static_cast<size_t>(saved) + 2)
      fail(where, ": input_grad_act needs the input's pre-activation after the incoming gradient");
    const int32_t z = kernel.operands.back(), x = kernel.operands[0];
    if (z < 0 || x < 0 || plan.values[z].shape != plan.values[x].shape ||
        plan.values[z].dtype != plan.values[x].dtype || !plan.values[z].contiguous())
      fail(where, ": the input's pre-activation must be a whole tensor shaped and typed as the input");
  }
  // kern-fold-norm-grad-sum: a gradient added to the input's, after the
  // incoming gradients.
  const bool summed = kernel.attrs.count("input_grad_addend") > 0;
  if (summed) {
    const int64_t *flag = std::get_if<int64_t>(&kernel.attrs.at("input_grad_addend"));
    if (op != "kern.norm")
      fail(where, ": only a kern.norm backward adds to its input gradient");
    if (flag == nullptr || *flag != 1)
      fail(where, ": attribute 'input_grad_addend' must be the integer 1");
    if (folded)
      fail(where, ": input_grad_act and input_grad_addend are exclusive");
    if (kernel.operands.size() < slots + static_cast<size_t>(saved) + 2)
      fail(where, ": input_grad_addend needs the addend after the incoming gradient");
    const int32_t a = kernel.operands.back(), x = kernel.operands[0];
    if (a < 0 || x < 0 || kernel.results[0] < 0 || plan.values[a].shape != plan.values[x].shape ||
        plan.values[a].dtype != plan.values[x].dtype || !plan.values[a].contiguous())
      fail(where, ": the addend must be a whole tensor shaped and typed as the input, whose gradient is wanted");
  }
  auto savedBegin = kernel.operands.begin() + slots, incomingBegin = savedBegin + saved;
  auto incomingEnd = kernel.operands.end() - (folded || summed ? 1 : 0);
  forward.operands.assign(kernel.operands.begin(), savedBegin);
  forward.results.assign(incomingBegin, incomingEnd);
  forward.results.insert(forward.results.end(), savedBegin, incomingBegin);
  for (auto id = savedBegin; id != incomingBegin; ++id)
    if (*id < 0)
      fail(where, ": saved value #", id - savedBegin, " is absent");
  bool loss = isLossOp(op);
  // The dense layer saves its pre-activation and the MoE its expert
  // activations; the other backward kernels read their incoming gradient
  // right after their slots.
  const bool savesOne = op == "kern.gemm" || op == "kern.moe";
  if (op == "kern.attention") {
    // Saves its result and log-sum-exp: the first saved value stands for
    // the result, whose gradient is the incoming one.
    if (saved != 2)
      fail(where, ": kern.attention saves its result and log-sum-exp (2 values), got ", saved);
    const ValueDesc &o = plan.values[forward.results[1]], &dO = plan.values[forward.results[0]];
    if (o.shape != dO.shape || o.dtype != dO.dtype)
      fail(where, ": the saved attention output is ", shapeText(o.shape), " ", dtypeName(o.dtype),
           " but its incoming gradient is ", shapeText(dO.shape), " ", dtypeName(dO.dtype));
    forward.results.erase(forward.results.begin() + 1);
  } else if (saved > 0 && (!savesOne || saved != 1)) {
    fail(where, ": ", op, " saves ", savesOne ? "one value" : "no values", ", got ", saved);
  }
  if (loss != (incomingBegin == incomingEnd))
    fail(where, ": ", loss ? "a loss takes no incoming gradient" : "needs the incoming gradients");
  if (loss && !kernel.attrs.count("loss_weight"))
    fail(where, ": missing attribute 'loss_weight'");
  Check c{plan, forward, where, loss};
  it->second(c);
  for (size_t i = 0; i < slots; ++i) {
    if (kernel.results[i] < 0)
      continue;
    if (forward.operands[i] < 0)
      fail(where, ": gradient #", i, " of an absent operand");
    const ValueDesc &g = plan.values[kernel.results[i]], &x = plan.values[forward.operands[i]];
    // Attention's backward writes strided gradients (the memory plan puts
    // q, k and v's in place in their packed gradient); the others are whole.
    if (g.shape != x.shape || g.dtype != x.dtype ||
        (!g.contiguous() && op != "dit.attention" && op != "kern.attention"))
      fail(where, ": gradient #", i, " is ", shapeText(g.shape), " ", dtypeName(g.dtype),
           " but its operand is ", shapeText(x.shape), " ", dtypeName(x.dtype));
    // Its row sums: one vector of the gradient's width (a slice of the
    // bias gradient they are part of, so its stride may be the whole's).
    if (sums && kernel.results[slots + i] >= 0) {
      const ValueDesc &sum = plan.values[kernel.results[slots + i]];
      if (sum.shape != std::vector<int64_t>{x.shape.back()} || sum.dtype != x.dtype)
        fail(where, ": the row sums of gradient #", i, " are ", shapeText(sum.shape), " ", dtypeName(sum.dtype),
             " but must be ", shapeText({x.shape.back()}), " ", dtypeName(x.dtype));
    }
  }
  if (sums)
    for (size_t i = 0; i < slots; ++i)
      if (kernel.results[slots + i] >= 0 && kernel.results[i] < 0)
        fail(where, ": row sums of gradient #", i, ", which is not wanted");
}

void validateKernel(const Plan &plan, const KernelDesc &kernel, const std::string &where) {
  if (kernel.op.rfind("vjp:", 0) == 0)
    return validateVjp(plan, kernel, where);
  // Element-wise ops run as generated kern.pointwise kernels; only their
  // backward kernels keep the op's own name.
  static const char *pointwiseOnly[] = {"dit.add", "dit.mul", "dit.silu", "dit.gelu", "kern.cast"};
  for (const char *op : pointwiseOnly)
    if (kernel.op == op)
      fail(where, ": ", op, " is executed as a kern.pointwise kernel, not on its own; recompile the model "
                            "with this diffc");
  auto it = checkers().find(kernel.op);
  if (it == checkers().end()) {
    std::string known;
    for (auto &[name, checker] : checkers())
      known += " " + name;
    fail(where, ": unknown kernel op '", kernel.op, "'; this runtime executes:", known);
  }
  Check c{plan, kernel, where};
  it->second(c);
  c.resultsContiguous();
}

std::vector<std::string> knownKernelOps() {
  std::vector<std::string> ops;
  for (auto &[name, checker] : checkers())
    ops.push_back(name);
  return ops;
}

int64_t attrInt(const KernelDesc &k, const char *name) { return std::get<int64_t>(findAttr(k, name)); }

int64_t savedCount(const KernelDesc &k) { return k.attrs.count("saved") ? attrInt(k, "saved") : 0; }

size_t slotCount(const KernelDesc &k) { return k.results.size() / (k.attrs.count("column_sums") ? 2 : 1); }

double attrFloat(const KernelDesc &k, const char *name) {
  const AttrValue &a = findAttr(k, name);
  if (auto *i = std::get_if<int64_t>(&a))
    return static_cast<double>(*i);
  return std::get<double>(a);
}

const std::string &attrString(const KernelDesc &k, const char *name) {
  return std::get<std::string>(findAttr(k, name));
}

const std::vector<int64_t> &attrInts(const KernelDesc &k, const char *name) {
  return std::get<std::vector<int64_t>>(findAttr(k, name));
}

} // namespace diffrt
