# lit configuration for diffc's FileCheck and -verify-diagnostics tests.
import os
import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "diffc"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.diffc_obj_root, "test")
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "CMakeLists.txt", "Inputs"]

# Captured FileCheck variables die at each CHECK-LABEL.
config.environment["FILECHECK_OPTS"] = "--enable-var-scope"

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
tool_dirs = [config.diffc_tools_dir, config.llvm_tools_dir]
tools = ["diffc-opt", "diffc", ToolSubst("FileCheck", unresolved="fatal")]
llvm_config.add_tool_substitutions(tools, tool_dirs)
config.substitutions.append(("%models", os.path.join(config.diffc_src_root, "models")))
config.substitutions.append(("%diffc_src", config.diffc_src_root))
config.substitutions.append(("%diffc_build", config.diffc_obj_root))
