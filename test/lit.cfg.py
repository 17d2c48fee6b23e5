# lit configuration for the treni FileCheck suites.
import os
import lit.formats
import lit.util

config.name = "treni"
config.test_format = lit.formats.ShTest(not lit.util.which("bash") is None)
config.suffixes = [".mlir", ".agent", ".test"]
config.excludes = ["fixtures", "unit", "fuzz", "lit.cfg.py", "CMakeLists.txt"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.treni_obj_root, "test")

# treni-opt / treni first, then FileCheck and not from LLVM's tool directory.
config.environment["PATH"] = os.pathsep.join(
    [config.treni_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("%fixtures", os.path.join(config.test_source_root, "fixtures")))
