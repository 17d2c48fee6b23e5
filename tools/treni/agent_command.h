//===- agent_command.h - `treni agent ...` ---------------------*- C++ -*-===//
#pragma once

namespace treni {
/// True when the command line selected the `agent` subcommand.
bool agentCommandSelected();
/// Runs `treni agent ACTION ...`; returns the process exit code.
int runAgentCommand();
} // namespace treni
