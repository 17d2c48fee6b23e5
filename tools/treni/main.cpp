//===- main.cpp - the treni command-line tool ----------------------------===//
//
//   treni run [MODEL] [--prompt TEXT]      answer a prompt: text, timings,
//                                          awareness (run_command.cpp)
//   treni chat [MODEL]                     multi-turn chat (chat_command.cpp)
//   treni serve [MODEL]                    the OpenAI HTTP API
//                                          (serve_command.cpp)
//   treni compile MODEL_DIR --emit=...     IR, plan, CUDA or an AOT package
//                                          (compile_command.cpp)
//   treni agent compile|run FLOW.agent     agent workflows
//                                          (agent_command.cpp)
//
// With no MODEL, `run`, `chat` and `serve` use the built-in default model,
// on the GPU when one is usable and on the CPU otherwise. `treni SUBCOMMAND
// --help` lists a subcommand's flags; the shared ones are in cli_flags.cpp.
//
//===----------------------------------------------------------------------===//

#include "tools/treni/agent_command.h"
#include "tools/treni/cli_flags.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"

int main(int argc, char **argv) {
  using namespace treni::cli;
  llvm::InitLLVM init(argc, argv);
  llvm::cl::ParseCommandLineOptions(argc, argv,
                                    "treni: compile and run language models\n");
  if (compileSubcommand())
    return runCompileCommand();
  if (runSubcommand())
    return runRunCommand();
  if (chatSubcommand())
    return runChatCommand();
  if (serveSubcommand())
    return runServeCommand();
  if (treni::agentCommandSelected())
    return treni::runAgentCommand();
  llvm::cl::PrintHelpMessage();
  return 1;
}
