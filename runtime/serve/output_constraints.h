//===- output_constraints.h - constrained decoding ---------------*- C++
//-*-===//
//
// Character-level automata a generated output must follow (constrained
// decoding). The Generator masks every token whose text one of them would
// refuse; the server uses them to force a JSON object for response_format
// json_object and for the arguments of a forced tool call.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace treni {

/// A character-level automaton the output must follow. Tokens are allowed
/// when every byte of their text is accepted; generation stops when the
/// constraint is complete, and complete() closes it when max_tokens runs out.
class OutputConstraint {
public:
  virtual ~OutputConstraint() = default;
  virtual std::unique_ptr<OutputConstraint> clone() const = 0;
  /// Consumes `c` if it may come next; false (state unchanged or undefined
  /// on a clone) if not.
  virtual bool accept(char c) = 0;
  /// The output so far is a complete match (generation stops here).
  virtual bool isComplete() const = 0;
  /// Shortest text that makes the output so far complete.
  virtual std::string completion() const = 0;

  /// Whether all of `text` may come next (checked on a clone).
  bool allows(std::string_view text) const;
  /// Feeds `text`; false if some byte was refused.
  bool acceptAll(std::string_view text);
};

/// One JSON object (RFC 8259), surrounding whitespace excluded: the first
/// byte must be '{', and the constraint is complete at the matching '}'.
/// Strings take any valid escape and any byte >= 0x20 but '"' and '\'
/// (multi-byte UTF-8 included); nesting is limited to `maxDepth`.
std::unique_ptr<OutputConstraint> jsonObjectConstraint(int maxDepth = 16);
/// Exactly `text`.
std::unique_ptr<OutputConstraint> literalConstraint(std::string text);
/// Exactly one of `choices` (none may be a proper prefix of another).
std::unique_ptr<OutputConstraint>
choiceConstraint(std::vector<std::string> choices);
/// `parts` one after the other.
std::unique_ptr<OutputConstraint>
sequenceConstraint(std::vector<std::unique_ptr<OutputConstraint>> parts);

} // namespace treni
