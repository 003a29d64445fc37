//===- Args.h - command-line arguments of diffc's subcommands ---*- C++ -*-===//
//
// A small parser for `--name=value`, `--name value`, `-o value`, flags and
// positional arguments, which rejects options a subcommand does not know
// with a message listing the ones it does.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_ARGS_H
#define DIFFRT_ARGS_H

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace diffrt {

class Args {
public:
  /// `valued` options take a value; `flags` do not. Returns false and sets
  /// `error` on an unknown option or a missing value.
  bool parse(const std::vector<std::string> &argv, const std::set<std::string> &valued,
             const std::set<std::string> &flags, std::string &error) {
    for (size_t i = 0; i < argv.size(); ++i) {
      std::string arg = argv[i];
      if (arg == "-" || arg.size() < 2 || arg[0] != '-') {
        positional.push_back(arg);
        continue;
      }
      std::string name = arg, value;
      bool hasValue = false;
      if (auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        hasValue = true;
      }
      if (flags.count(name)) {
        if (hasValue) {
          error = name + " takes no value";
          return false;
        }
        values[name] = "true";
        continue;
      }
      if (!valued.count(name)) {
        error = "unknown option " + name + "; this command accepts:";
        for (const std::string &o : valued)
          error += " " + o + "=...";
        for (const std::string &o : flags)
          error += " " + o;
        return false;
      }
      if (!hasValue) {
        if (i + 1 >= argv.size()) {
          error = name + " needs a value";
          return false;
        }
        value = argv[++i];
      }
      values[name] = value;
    }
    return true;
  }

  std::optional<std::string> get(const std::string &name) const {
    auto it = values.find(name);
    if (it == values.end())
      return std::nullopt;
    return it->second;
  }
  bool has(const std::string &name) const { return values.count(name) != 0; }
  /// The option's value as a number, `fallback` when absent; a value that
  /// is not a number throws a diffrt::Error naming the option.
  double number(const std::string &name, double fallback) const;
  /// The option's value as a whole number, `fallback` when absent.
  int64_t integer(const std::string &name, int64_t fallback) const;

  std::vector<std::string> positional;

private:
  std::map<std::string, std::string> values;
};

} // namespace diffrt

#endif // DIFFRT_ARGS_H
