//===- AgentBase.td - the agent dialect and its types ------*- tablegen -*-===//
#ifndef AGENT_BASE_TD
#define AGENT_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Agent_Dialect : Dialect {
  let name = "agent";
  let summary = "Agent workflows: model calls, tool calls, retries and branches";
  let description = [{
    A `.agent` workflow lowered to IR (see docs/agent-language.md). A
    workflow is a function-like `agent.workflow` whose body runs steps in
    order: `agent.generate` calls the model and yields the text with its
    token-level uncertainty, `agent.tool` calls a registered tool. Control
    flow is structured: `agent.retry` re-runs a region while a condition
    region says so, `agent.if` picks one of two regions, `agent.parallel`
    runs independent tool calls at once, and `agent.return` ends the
    workflow from any depth. Every other op is pure: constants, string
    templates (`agent.format`), field reads of step results and the
    comparisons and logic of conditions.

    Plain values are `!agent.string`, `i64`, `f64`, `i1` and `!agent.json`;
    step results are `!agent.generation` and `!agent.tool_result`.
  }];
  let cppNamespace = "::agent";
  let useDefaultTypePrinterParser = 1;
}

class Agent_Op<string mnemonic, list<Trait> traits = []>
    : Op<Agent_Dialect, mnemonic, traits>;

class Agent_Type<string name, string typeMnemonic, string typeSummary>
    : TypeDef<Agent_Dialect, name> {
  let mnemonic = typeMnemonic;
  let summary = typeSummary;
}

def Agent_StringType : Agent_Type<"String", "string", "UTF-8 text"> {
  let description = [{ A UTF-8 string value: `!agent.string`. }];
}

def Agent_JsonType : Agent_Type<"Json", "json", "a JSON value"> {
  let description = [{
    Any JSON value (`null`, number, string, array, object): `!agent.json`.
    List literals of the language and tool outputs have this type.
  }];
}

def Agent_GenerationType
    : Agent_Type<"Generation", "generation", "the result of a generate step"> {
  let description = [{
    What `agent.generate` produced: the text, the number of tokens, and per
    token the log-probability, the entropy of the distribution and the top
    alternatives. `agent.text` and `agent.uncertainty` read it.
  }];
}

def Agent_ToolResultType
    : Agent_Type<"ToolResult", "tool_result", "the result of a tool step"> {
  let description = [{
    What `agent.tool` produced after its retries: success or failure, the
    output (JSON) and the error message. `agent.tool_ok`, `agent.tool_output`,
    `agent.tool_error` and `agent.text` read it.
  }];
}

/// Values a workflow parameter, a `let`, a template argument or a tool
/// argument may have.
def Agent_Value : AnyTypeOf<[Agent_StringType, I64, F64, I1, Agent_JsonType],
                            "agent value (!agent.string, i64, f64, i1 or !agent.json)">;
/// Anything a region may carry out: plain values and step results.
def Agent_AnyType : AnyTypeOf<[Agent_StringType, I64, F64, I1, Agent_JsonType,
                               Agent_GenerationType, Agent_ToolResultType],
                              "agent type">;
def Agent_Step : AnyTypeOf<[Agent_GenerationType, Agent_ToolResultType],
                           "step result (!agent.generation or !agent.tool_result)">;

#endif // AGENT_BASE_TD
