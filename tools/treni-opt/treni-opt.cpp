//===- treni-opt.cpp - MLIR driver with the treni dialect and passes -----===//

#include "ir/AgentDialect.h"
#include "ir/TreniDialect.h"
#include "passes/AgentPasses.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  treni::registerAllTreniPasses();
  agent::registerAllAgentPasses();
  mlir::DialectRegistry registry;
  registry.insert<treni::TreniDialect, agent::AgentDialect,
                  mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "treni optimizer driver\n", registry));
}
