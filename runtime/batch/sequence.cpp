//===- sequence.cpp - one request's state in the batch scheduler --------===//

#include "runtime/batch/sequence.h"

namespace treni {

const char *toString(SequenceFinish reason) {
  switch (reason) {
  case SequenceFinish::Stop:
    return "stop";
  case SequenceFinish::Length:
    return "length";
  case SequenceFinish::Context:
    return "context";
  }
  return "unknown";
}

} // namespace treni
