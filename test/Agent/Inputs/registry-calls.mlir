// Tool calls that only the registry file (Inputs/tools.json) declares.
agent.workflow @read(%p: !agent.string {agent.param = "p"}, %n: i64 {agent.param = "n"}) {
  %a = agent.tool "file.read"(%p : !agent.string) {arg_names = ["path"], step = "a"}
  %b = agent.tool "file.read"(%p, %n : !agent.string, i64) {arg_names = ["path", "max_bytes"], step = "b"}
  %c = agent.tool "sqlite.query"(%p : !agent.string) {arg_names = ["sql"], step = "c"}
  agent.return
}
