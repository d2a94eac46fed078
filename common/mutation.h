// Broken variants of the decision code, for the simulator to prove it can fail
// (tests/sim: each mutation must be caught by an invariant within the CI budget).
// Only the simulator's own build of the code under test defines BITACORA_SIM_MUTATIONS;
// everywhere else Mutated() is a constant false and the broken paths compile away.
#pragma once

#include <string_view>

namespace bitacora::sim {

enum class Mutation {
    None,
    SkipParentCheck,      // EVM: a header that does not link to our tip is taken as ours
    AppendBeforeFinality, // EVM: the head counts as final
    KeepOverlayOnReorg,   // EVM: a reorg forgets to roll the ledger's pending overlay back
    ForgetCursorCheck,    // EVM: a reorg below the final block is not checked at start
    AnchorKeepsProof,     // anchorer: a disconnected block's anchor keeps its proof material
    AnchorFinalEarly,     // anchorer: final one confirmation too soon
    AnchorResignsAfterCrash, // anchorer: after a restart, a sent anchor is funded and signed anew
};

#ifdef BITACORA_SIM_MUTATIONS
Mutation ActiveMutation();
void SetMutation(Mutation mutation);
inline bool Mutated(Mutation mutation) { return ActiveMutation() == mutation; }
#else
constexpr bool Mutated(Mutation) { return false; }
#endif

} // namespace bitacora::sim
