//===- TreniBase.td - the treni dialect definition ---------*- tablegen -*-===//
#ifndef TRENI_BASE_TD
#define TRENI_BASE_TD

include "mlir/IR/OpBase.td"

def Treni_Dialect : Dialect {
  let name = "treni";
  let summary = "Transformer-level ops of a decoder language model";
  let description = [{
    The model graph of a Hugging Face decoder checkpoint. Ops are transformer
    level (embedding, rms_norm, linear, rope, attention...) over builtin ranked
    tensors; the prompt length is the dynamic dimension of `@prefill` and is 1
    in `@decode`. `@step` has dynamic rows too, but they may belong to
    different sequences (continuous batching) and every row gets logits.
    Weights are never embedded: `treni.weight` names a checkpoint tensor, and
    the module attribute `treni.weights` records where each lives. The KV
    cache is explicit state: a module-level `treni.kv_cache` symbol that
    `treni.cache_write` writes and `treni.attention` reads.

    The unit attribute `treni.one_sequence` on a function says that all its
    rows are one sequence at consecutive positions (`@prefill`, `@decode`);
    passes whose kernels rely on that check for it.
  }];
  let cppNamespace = "::treni";
  let hasOperationAttrVerify = 1;
}

class Treni_Op<string mnemonic, list<Trait> traits = []>
    : Op<Treni_Dialect, mnemonic, traits>;

def Treni_Float : AnyTypeOf<[BF16, F16, F32]>;
def Treni_FloatTensor2D : 2DTensorOf<[BF16, F16, F32]>;
def Treni_FloatTensor1D : 1DTensorOf<[BF16, F16, F32]>;
def Treni_IndexTensor : 1DTensorOf<[I32]>;

#endif // TRENI_BASE_TD
